"""Released exercises into ~/exercises at server start: new ones fetched as nbgrader's fetch lays them
out, the student's own never touched, a re-release put beside, failures never fatal."""

import json
import os
from pathlib import Path

from d2lhub.grading import layout
from d2lhub.image import exercises
from d2lhub.image.exercises import STATE_FILE, fetch_all, main


def release(exchange: Path, name: str, files: dict[str, str], course: str = "d2l") -> Path:
    folder = exchange / course / "outbound" / name
    for relative, text in files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(text)
    return folder


def test_fetches_every_released_assignment_as_nbgraders_fetch_places_it(tmp_path):
    exchange, home = tmp_path / "exchange", tmp_path / "home"
    release(exchange, "ex01", {"ex01.ipynb": "one", "data/x.csv": "1,2", ".ipynb_checkpoints/ex01-checkpoint.ipynb": "c",
                               "__pycache__/m.pyc": "b", "feedback/old.html": "f"})
    release(exchange, "ex02", {"ex02.ipynb": "two"})
    (exchange / "d2l" / "inbound").mkdir()
    report = fetch_all(exchange, home)
    assert sorted(report.fetched) == ["ex01", "ex02"] and not report.failed
    assert (home / "exercises/ex01/ex01.ipynb").read_text() == "one"
    assert (home / "exercises/ex01/data/x.csv").read_text() == "1,2"
    assert (home / "exercises/ex02/ex02.ipynb").read_text() == "two"
    # nbgrader's CourseDirectory.ignore: what its own fetch leaves out
    assert sorted(os.listdir(home / "exercises/ex01")) == ["data", "ex01.ipynb"]
    assert not [p for p in (home / "exercises").iterdir() if p.name.startswith(".")]  # no partial folders left


def test_never_touches_the_students_copy_and_puts_a_new_release_beside(tmp_path):
    exchange, home = tmp_path / "exchange", tmp_path / "home"
    release(exchange, "ex01", {"ex01.ipynb": "v1"})
    fetch_all(exchange, home)
    mine = home / "exercises/ex01/ex01.ipynb"
    mine.write_text("my answer")
    (home / "exercises/ex01/scratch.txt").write_text("notes")

    report = fetch_all(exchange, home)  # nothing released since: nothing happens
    assert report.fetched == report.beside == [] and not (home / "exercises/ex01.new").exists()

    release(exchange, "ex01", {"ex01.ipynb": "v2"})
    report = fetch_all(exchange, home)
    assert report.beside == ["ex01"] and report.fetched == []
    assert mine.read_text() == "my answer" and (home / "exercises/ex01/scratch.txt").read_text() == "notes"
    assert (home / "exercises/ex01.new/ex01.ipynb").read_text() == "v2"
    assert fetch_all(exchange, home).beside == []  # once per release

    release(exchange, "ex01", {"ex01.ipynb": "v3"})
    fetch_all(exchange, home)
    assert (home / "exercises/ex01.new/ex01.ipynb").read_text() == "v3"
    assert mine.read_text() == "my answer"


def test_an_assignment_fetched_from_the_tab_is_its_own_baseline(tmp_path):
    exchange, home = tmp_path / "exchange", tmp_path / "home"
    release(exchange, "ex01", {"ex01.ipynb": "v1"})
    (home / "exercises/ex01").mkdir(parents=True)
    (home / "exercises/ex01/ex01.ipynb").write_text("fetched by hand, then edited")
    report = fetch_all(exchange, home)
    assert report.fetched == report.beside == []
    assert (home / "exercises/ex01/ex01.ipynb").read_text() == "fetched by hand, then edited"
    assert "ex01" in json.loads((home / STATE_FILE).read_text())
    release(exchange, "ex01", {"ex01.ipynb": "v2"})
    assert fetch_all(exchange, home).beside == ["ex01"]


def test_a_deleted_assignment_comes_back_fresh(tmp_path):
    exchange, home = tmp_path / "exchange", tmp_path / "home"
    release(exchange, "ex01", {"ex01.ipynb": "v1"})
    fetch_all(exchange, home)
    (home / "exercises/ex01/ex01.ipynb").unlink()
    (home / "exercises/ex01").rmdir()
    assert fetch_all(exchange, home).fetched == ["ex01"]
    assert (home / "exercises/ex01/ex01.ipynb").read_text() == "v1"


def test_a_fetch_into_home_from_before_is_moved_not_duplicated(tmp_path):
    exchange, home = tmp_path / "exchange", tmp_path / "home"
    release(exchange, "ex01", {"ex01.ipynb": "v1"})
    release(exchange, "ex02", {"ex02.ipynb": "v1"})
    (home / "ex01").mkdir(parents=True)
    (home / "ex01/ex01.ipynb").write_text("my answer")
    (home / "ex02").mkdir()  # a folder of the student's own that happens to share the name: not a fetch
    (home / "ex02/notes.txt").write_text("mine")
    report = fetch_all(exchange, home)
    assert report.moved == ["ex01"] and report.fetched == ["ex02"]
    assert (home / "exercises/ex01/ex01.ipynb").read_text() == "my answer" and not (home / "ex01").exists()
    assert (home / "ex02/notes.txt").read_text() == "mine"


def test_a_partial_copy_left_by_a_dead_start_is_redone(tmp_path):
    exchange, home = tmp_path / "exchange", tmp_path / "home"
    release(exchange, "ex01", {"ex01.ipynb": "v1", "b.ipynb": "b"})
    (home / "exercises/.ex01.partial").mkdir(parents=True)
    (home / "exercises/.ex01.partial/b.ipynb").write_text("half")
    assert fetch_all(exchange, home).fetched == ["ex01"]
    assert sorted(os.listdir(home / "exercises")) == ["ex01"]
    assert (home / "exercises/ex01/b.ipynb").read_text() == "b"


def test_one_failing_assignment_does_not_stop_the_others(tmp_path, monkeypatch, capsys):
    exchange, home = tmp_path / "exchange", tmp_path / "home"
    release(exchange, "ex01", {"ex01.ipynb": "v1"})
    release(exchange, "ex02", {"ex02.ipynb": "v1"})
    real_copy = exercises.copy_into_place

    def copy(source, target, replace=False):
        if source.name == "ex01":
            raise PermissionError(13, "Permission denied", str(source))
        real_copy(source, target, replace)

    monkeypatch.setattr(exercises, "copy_into_place", copy)
    report = fetch_all(exchange, home)
    assert report.failed == ["ex01"] and report.fetched == ["ex02"]
    assert "could not fetch ex01" in capsys.readouterr().err
    assert (home / "exercises/ex02/ex02.ipynb").read_text() == "v1"
    monkeypatch.setattr(exercises, "copy_into_place", real_copy)
    assert fetch_all(exchange, home).fetched == ["ex01"]  # tried again at the next start


def test_a_release_still_being_written_is_left_for_a_later_start(tmp_path):
    exchange, home = tmp_path / "exchange", tmp_path / "home"
    (exchange / "d2l/outbound/ex01").mkdir(parents=True)  # the instructor's release has made the folder, no notebook yet
    assert fetch_all(exchange, home).fetched == [] and not (home / "exercises/ex01").exists()
    release(exchange, "ex01", {"ex01.ipynb": "v1"})
    assert fetch_all(exchange, home).fetched == ["ex01"]


def test_no_exchange_still_makes_the_folder_the_assignments_tab_changes_into(tmp_path):
    home = tmp_path / "home"
    report = fetch_all(tmp_path / "nothing-mounted", home)
    assert report.fetched == [] and (home / "exercises").is_dir()


def test_main_never_fails_the_start(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    home.write_text("not a folder")  # ~/exercises cannot be made
    monkeypatch.setenv("HOME", str(home))
    assert main(["exercises.py", str(tmp_path / "exchange")]) == 0
    assert "starting anyway" in capsys.readouterr().err


def test_students_nbgrader_fetches_lists_and_submits_in_the_same_folder():
    assert layout.STUDENT_EXERCISES_DIR == "/home/jovyan/exercises"
    from d2lhub.config import Classroom

    text = layout.student_config(Classroom().offerings, 100)
    assert "c.Exchange.assignment_dir = '/home/jovyan/exercises'" in text
    assert "c.CourseDirectory.course_id = 'd2l'" in text and "path_includes_course" not in text


def test_a_student_of_several_courses_gets_each_in_a_folder_of_its_own(tmp_path):
    """nbgrader's multi-course layout, ~/exercises/<course>/<assignment>: two courses' same-named
    exercises never meet."""
    exchange, home = tmp_path / "exchange", tmp_path / "home"
    release(exchange, "ex01", {"ex01.ipynb": "intro's"}, course="intro-a")
    release(exchange, "ex01", {"ex01.ipynb": "adv's"}, course="adv")
    report = fetch_all(exchange, home)
    assert sorted(report.fetched) == ["adv/ex01", "intro-a/ex01"]
    assert (home / "exercises/intro-a/ex01/ex01.ipynb").read_text() == "intro's"
    assert (home / "exercises/adv/ex01/ex01.ipynb").read_text() == "adv's"
    (home / "exercises/adv/ex01/ex01.ipynb").write_text("my answer")
    release(exchange, "ex01", {"ex01.ipynb": "adv's v2"}, course="adv")
    assert fetch_all(exchange, home).beside == ["adv/ex01"]
    assert (home / "exercises/adv/ex01.new/ex01.ipynb").read_text() == "adv's v2"
    assert (home / "exercises/adv/ex01/ex01.ipynb").read_text() == "my answer"


def test_the_start_scripts_one_process_syncs_the_course_then_fetches(tmp_path, monkeypatch, capsys):
    from d2lhub.image import delivery

    exchange, home = tmp_path / "exchange", tmp_path / "home"
    release(exchange, "ex01", {"ex01.ipynb": "v1"})
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(exercises, "EXCHANGE", exchange)
    monkeypatch.setitem(__import__("sys").modules, "exercises", exercises)  # what `import exercises` finds in the image
    monkeypatch.setattr(delivery, "deliver", lambda course, home: (_ for _ in ()).throw(OSError("course unreadable")))
    assert delivery.main(["delivery.py", str(tmp_path / "course"), "--exercises"]) == 1  # the sync failed ...
    assert (home / "exercises/ex01/ex01.ipynb").read_text() == "v1"  # ... and the exercises still came
    assert "course unreadable" in capsys.readouterr().err


def test_a_student_who_joins_a_second_course_keeps_their_work_in_the_first_ones_folder(tmp_path):
    exchange, home = tmp_path / "exchange", tmp_path / "home"
    release(exchange, "ex01", {"ex01.ipynb": "intro's"}, course="intro-a")
    fetch_all(exchange, home)
    (home / "exercises/ex01/ex01.ipynb").write_text("my answer")
    release(exchange, "ex01", {"ex01.ipynb": "adv's"}, course="adv")  # now in two courses, both with an ex01
    report = fetch_all(exchange, home)
    assert report.regrouped == ["intro-a/ex01"] and report.fetched == ["adv/ex01"]
    assert (home / "exercises/intro-a/ex01/ex01.ipynb").read_text() == "my answer"
    assert (home / "exercises/adv/ex01/ex01.ipynb").read_text() == "adv's" and not (home / "exercises/ex01").exists()
    assert "several courses now: moved ~/exercises/ex01 to ~/exercises/intro-a/ex01" in "\n".join(report.lines())
    assert fetch_all(exchange, home).regrouped == []  # once
