"""The pure parts of `course check`: which chapters, how they are shared out, how a container is made."""

import json
from pathlib import Path

import pytest

from d2lhub import config
from d2lhub.course.build import build_course
from d2lhub.course.check import (
    CheckError,
    Result,
    chapters_of,
    container_settings,
    json_lines,
    report_file,
    share_out,
)
from d2lhub.state import course_dir
from d2lhub.studentimage import COURSE_MOUNT, DATA_MOUNT, HOME

REPO_COURSE = str(Path(__file__).resolve().parents[2] / "course")


def classroom(tmp_path, **limits):
    data = {
        "hub": {"state_dir": str(tmp_path / "state")},
        "limits": {"cpu": 0.5, "memory": "1G", "pids": 256, **limits},
        "spawner": {"instance": "unit", "uid_base": 30000},
    }
    path = tmp_path / "classroom.yaml"
    path.write_text(json.dumps(data))
    (tmp_path / "images/student").mkdir(parents=True)
    (tmp_path / "images/student/Dockerfile").write_text("FROM scratch\n")
    return config.load(path)


def test_chapters_in_book_order(tmp_path):
    room = classroom(tmp_path)
    build_course(REPO_COURSE, course_dir(room))
    chapters = chapters_of(course_dir(room))
    assert chapters[0] == "chapter_preliminaries/index.ipynb"
    assert chapters.index("chapter_preliminaries/ndarray.ipynb") < chapters.index("chapter_convolutional-neural-networks/lenet.ipynb")


def test_unbuilt_course_is_a_clear_error(tmp_path):
    with pytest.raises(CheckError, match="run `d2lhub course build` first"):
        chapters_of(tmp_path / "nothing")


def test_share_out_round_robin_and_never_empty():
    assert share_out(["a", "b", "c", "d", "e"], 2) == [["a", "c", "e"], ["b", "d"]]
    assert share_out(["a", "b"], 5) == [["a"], ["b"]]
    assert share_out(["a"], 0) == [["a"]]


def test_container_is_made_like_a_students(tmp_path):
    room = classroom(tmp_path)
    settings = container_settings(room, "img:tag", ["x/a.ipynb"], 30, with_data=True)
    assert settings["user"] == "30000:100"
    assert settings["network_mode"] == "none"
    assert settings["cap_drop"] == ["ALL"]
    assert settings["mem_limit"] == 1024**3
    assert settings["nano_cpus"] == 500_000_000
    assert settings["pids_limit"] == 256
    assert settings["volumes"][str(course_dir(room))] == {"bind": COURSE_MOUNT, "mode": "ro"}
    assert settings["volumes"]["unit-data"] == {"bind": DATA_MOUNT, "mode": "ro"}
    assert "uid=30000" in settings["tmpfs"][HOME]
    assert settings["labels"]["org.d2lhub.instance"] == "unit"
    assert settings["command"][-3:] == ["--timeout", "30", "x/a.ipynb"]
    assert "unit-data" not in container_settings(room, "img:tag", ["a"], 30, with_data=False)["volumes"]


def test_json_lines_joins_split_chunks_and_skips_noise():
    chunks = [b'noise\n{"event": "st', b'art", "chapter": "a"}\n{"event"', b': "done"}\n']
    assert list(json_lines(chunks)) == [{"event": "start", "chapter": "a"}, {"event": "done"}]


def test_outcome_labels():
    assert Result("a", "ok", 0.1).passed
    assert not Result("a", "timed out", 600).passed
    assert Result("a", "needs data", 1, "time_machine").label == "needs data: time_machine"
    assert Result("a", "needs GPUs", 0, "1").label == "needs 1 GPU"
    assert Result("a", "needs GPUs", 0, "2").label == "needs 2 GPUs" and Result("a", "needs GPUs", 0, "2").skipped
    assert Result("a", "broken", 1, "cell 2: NameError: x").label == "broken: cell 2: NameError: x"


def test_report_counts_every_outcome(tmp_path):
    import json

    from d2lhub.course.check import report

    results = [Result("a", "ok", 1.0), Result("b", "needs GPUs", 0.0, "2"), Result("c", "broken", 2.0, "cell 1: E: x")]
    report(results, tmp_path / "course", tmp_path / "ci/report.json")
    document = json.loads((tmp_path / "ci/report.json").read_text())
    assert document["counts"] == {"ok": 1, "needs data": 0, "needs GPUs": 1, "timed out": 0, "broken": 1}
    assert document["chapters"][1] == {"chapter": "b", "outcome": "needs GPUs", "seconds": 0.0, "detail": "2",
                                       "label": "needs 2 GPUs"}
    assert list(tmp_path.joinpath("ci").iterdir()) == [tmp_path / "ci/report.json"]


def test_with_several_courses_each_is_checked_from_its_own_folder(tmp_path):
    from d2lhub.cli.course import as_the_course

    room = classroom(tmp_path)
    assert report_file(room) == tmp_path / "state" / "course-check.json"  # one course: as before
    several = room.model_copy(update={"courses": (room.course.model_copy(update={"id": "intro"}),
                                                  room.course.model_copy(update={"id": "adv"}))})
    adv = as_the_course(several, several.courses[1])
    settings = container_settings(adv, "img:tag", ["x/a.ipynb"], 30, with_data=False)
    assert settings["volumes"][str(tmp_path / "state/courses/adv")] == {"bind": COURSE_MOUNT, "mode": "ro"}
    assert report_file(adv) == tmp_path / "state/courses/adv-course-check.json"
