"""Grading per offering without a hub: what each server mounts (only the offerings its user studies in
or grades), the nbgrader configs they read, the course folder of an older classroom moved to its
offering, and which offering a grading verb works on."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from nbgrader.api import Gradebook
from traitlets.config import PyFileConfigLoader

from d2lhub.config import Classroom
from d2lhub.grading import access, layout
from d2lhub.grading.errors import GradingError

COURSES = [{"id": "intro", "sections": [{"id": "a"}, {"id": "b"}]}, {"id": "adv"}]


def classroom(tmp_path, **extra) -> Classroom:
    return Classroom.model_validate({"hub": {"state_dir": str(tmp_path / "state")}, **extra})


def binds(mounts: dict[str, dict]) -> dict[str, str]:
    return {spec["bind"]: source for source, spec in mounts.items()}


def config_of(mounts: dict[str, dict], home) -> object:
    source = binds(mounts)[layout.STUDENT_CONFIG_MOUNT]
    return PyFileConfigLoader(source.rsplit("/", 1)[1], path=source.rsplit("/", 1)[0]).load_config()


def test_a_student_of_two_courses_mounts_both_and_nothing_of_the_section_they_are_not_in(tmp_path):
    room = classroom(tmp_path, courses=COURSES)
    mounts = binds(layout.student_mounts(room, 20001, "ada", {"nbgrader-intro-a", "nbgrader-adv"}))
    exchange = layout.EXCHANGE_MOUNT
    assert mounts[f"{exchange}/intro-a"] == str(layout.exchange_root(room) / "intro-a")
    assert mounts[f"{exchange}/adv/inbound"] == str(layout.exchange_root(room) / "adv" / "inbound")
    assert not [m for m in mounts if "intro-b" in m or m.startswith(layout.GRADER_COURSE_MOUNT)]
    assert not [s for s in mounts.values() if "intro-b" in s or "/courses/" in s]
    text = (layout.config_file(room, "ada")).read_text()
    assert "c.Exchange.path_includes_course = True" in text and "c.CourseDirectory.course_id = ''" in text


def test_a_ta_of_one_section_gets_its_course_folder_alone_and_a_grader_of_two_gets_each(tmp_path, monkeypatch):
    room = classroom(tmp_path, courses=COURSES)
    ta = layout.student_mounts(room, 20002, "tia", {"formgrade-intro-a"})
    assert binds(ta)[layout.GRADER_COURSE_MOUNT] == str(layout.course_root(room, room.offerings[0]))
    assert not [s for s in binds(ta).values() if "intro-b" in s or s.endswith("/adv")]
    assert config_of(ta, tmp_path).CourseDirectory.root == layout.GRADER_COURSE_MOUNT

    both = binds(layout.student_mounts(room, 20003, "prof", {"formgrade-intro-a", "formgrade-adv"}))
    assert both[f"{layout.GRADER_COURSE_MOUNT}/intro-a"].endswith("/courses/intro-a")
    assert both[f"{layout.GRADER_COURSE_MOUNT}/adv"].endswith("/courses/adv")
    home = tmp_path / "prof"
    monkeypatch.setenv("HOME", str(home))
    source = layout.config_file(room, "prof")
    load = lambda: PyFileConfigLoader(source.name, path=str(source.parent)).load_config().CourseDirectory  # noqa: E731
    assert (load().course_id, load().root) == ("intro-a", f"{layout.GRADER_COURSE_MOUNT}/intro-a")  # the first
    (home / ".d2lhub").mkdir(parents=True)
    (home / ".d2lhub" / "formgrader").write_text("adv\n")  # the one they chose
    assert (load().course_id, load().root) == ("adv", f"{layout.GRADER_COURSE_MOUNT}/adv")
    (home / ".d2lhub" / "formgrader").write_text("intro-b")  # not theirs: the first again
    assert load().course_id == "intro-a"


def test_one_course_mounts_as_always_even_for_a_user_in_no_group(tmp_path):
    room = classroom(tmp_path)
    mounts = binds(layout.student_mounts(room, 20001, "boss", set()))
    assert set(mounts) == {"/etc/passwd", f"{layout.EXCHANGE_MOUNT}/d2l", f"{layout.EXCHANGE_MOUNT}/d2l/inbound",
                           layout.STUDENT_CONFIG_MOUNT}
    text = layout.config_file(room, "boss").read_text()
    assert "c.CourseDirectory.course_id = 'd2l'" in text and "path_includes_course" not in text


def test_the_course_folder_of_an_older_classroom_moves_to_its_offering(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")  # nbgrader runs `alembic`
    room = classroom(tmp_path)
    legacy = layout.grading_dir(room) / "course"
    (legacy / "submitted" / "s1" / "ex01").mkdir(parents=True)
    with Gradebook(f"sqlite:///{legacy / 'gradebook.db'}", "d2l"):
        pass
    layout.ensure_exchange(room, room.offerings[0])
    moved = layout.course_root(room)
    assert not legacy.exists() and (moved / "gradebook.db").is_file() and (moved / "submitted/s1/ex01").is_dir()

    # Several courses: the gradebook says whose it was.
    two = classroom(tmp_path / "two", courses=[{"id": "adv"}, {"id": "d2l"}])
    legacy = layout.grading_dir(two) / "course"
    legacy.mkdir(parents=True)
    with Gradebook(f"sqlite:///{legacy / 'gradebook.db'}", "d2l"):
        pass
    layout.ensure_exchange(two, two.offerings[0])
    assert (layout.course_root(two, two.offerings[1]) / "gradebook.db").is_file() and not legacy.exists()


def test_a_verb_names_its_course_when_the_hub_has_several(tmp_path):
    room = classroom(tmp_path, courses=COURSES)
    with pytest.raises(GradingError, match=r"several courses and sections: give --course \(one of intro/a, intro/b, adv\)"):
        access.choose(room, None)
    assert access.choose(room, "intro/b").id == access.choose(room, "intro-b").id == "intro-b"
    with pytest.raises(GradingError, match="--course: no course or section 'intro/c'"):
        access.choose(room, "intro/c")
    assert access.offering_for(classroom(tmp_path), None, None).id == "d2l"  # one course: no --course needed
