"""Due dates, extensions and the late policy: the pure parts (times, the policy's arithmetic, the
released notebook's due cell, what a student's Assignments tab lists) without a hub."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import nbformat
import pytest
import yaml
from traitlets.config import Config, PyFileConfigLoader

from d2lhub.config import Classroom, ConfigError, load
from d2lhub.deadlines_config import Late
from d2lhub.grading import deadlines, layout
from d2lhub.grading.errors import GradingError
from d2lhub.image import duedates

REPO = Path(__file__).resolve().parents[2]
DAY, HOUR = 86400, 3600


def classroom(tmp_path: Path | None = None, zone: str = "Europe/Berlin", **late) -> Classroom:
    data = {"course": {"timezone": zone}, "grading": {"late": late} if late else {}}
    if tmp_path is not None:
        data["hub"] = {"state_dir": str(tmp_path / "state")}
    return Classroom.model_validate(data)


# The policy ------------------------------------------------------------------


def test_the_policies_take_what_they_say():
    assert Late().penalty(8, 5 * DAY) == 0  # none: late work keeps its score
    assert Late(policy="zero").penalty(8, 1) == 8
    assert Late(policy="zero").penalty(8, 0) == 0  # on time is never penalised
    per_day = Late(policy="penalty", percent=10)
    assert per_day.penalty(10, 1) == 1  # a started day counts whole
    assert per_day.penalty(10, DAY) == 1 and per_day.penalty(10, DAY + 1) == 2
    assert per_day.penalty(10, 30 * DAY) == 10  # no floor: down to nothing
    with_floor = Late(policy="penalty", per="hour", percent=25, floor=40)
    assert with_floor.penalty(8, 1.5 * HOUR) == 4  # 2 started hours: 50%, but 40% is kept: 60% lost
    assert with_floor.penalty(8, HOUR) == 2
    assert with_floor.describe() == "25% of the score per hour late, keeping at least 40%"


@pytest.mark.parametrize(
    ("late", "expected"),
    [
        ({"policy": "sometimes"}, "grading.late.policy"),
        ({"policy": "penalty", "percent": 0}, "grading.late.percent"),
        ({"policy": "penalty", "floor": 100}, "grading.late.floor"),
        ({"policy": "penalty", "per": "week"}, "grading.late.per"),
        ({"policy": "zero", "percent": 5}, "per, percent and floor apply only to policy: penalty"),
    ],
)
def test_a_bad_late_policy_names_its_key(tmp_path, late, expected):
    path = tmp_path / "classroom.yaml"
    path.write_text(yaml.safe_dump({"images": {"student": {"name": "x/y", "context": str(REPO / "images/student")}},
                                    "grading": {"late": late}}))
    with pytest.raises(ConfigError) as error:
        load(path)
    assert expected in str(error.value)


def test_the_course_time_zone_is_checked_and_prestart_uses_it_unless_it_names_its_own(tmp_path):
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        classroom(zone="Mars/Olympus")
    assert Classroom().course.timezone == "UTC" and Classroom().prestart.timezone is None


def test_nbgraders_plugin_applies_grading_late():
    from nbgrader.preprocessors import AssignLatePenalties

    config = Config()
    deadlines.configure(config, classroom(policy="penalty", percent=50, floor=20))
    step = AssignLatePenalties(config=config)
    step.init_plugin()
    assert isinstance(step.plugin_inst, deadlines.ClassroomLatePolicy)
    assert step.plugin_inst.late_submission_penalty("s", 10, 3 * DAY) == 8  # 150% lost, 20% kept


# Times -----------------------------------------------------------------------


def test_due_dates_are_read_in_the_course_zone_daylight_saving_included():
    room = "Europe/Berlin"
    assert deadlines.parse_when("2027-03-01 23:59", room) == datetime(2027, 3, 1, 22, 59, tzinfo=timezone.utc)
    assert deadlines.parse_when("2027-07-01T12:00", room) == datetime(2027, 7, 1, 10, 0, tzinfo=timezone.utc)
    assert deadlines.parse_when("2027-07-01", room) == datetime(2027, 7, 1, 21, 59, tzinfo=timezone.utc)  # 23:59
    assert deadlines.shown(datetime(2027, 3, 1, 22, 59, tzinfo=timezone.utc), room) == "2027-03-01 23:59 (Europe/Berlin)"
    with pytest.raises(GradingError, match=r"--until: 'friday' is not a date and time like 2027-03-01 23:59 \(read in Europe/Berlin\)"):
        deadlines.parse_when("friday", room, "--until")


def test_lateness_is_said_to_the_started_minute():
    assert deadlines.span(59) == "1 min"
    assert deadlines.span(DAY + 2 * HOUR + 61) == "1 day 2 h 2 min"
    assert deadlines.span(3 * DAY) == "3 days"


def test_the_feedback_note_says_how_late_and_whose_due_date():
    late, zone = classroom(policy="zero").grading.late, "Europe/Berlin"
    due = datetime(2027, 3, 1, 22, 59, tzinfo=timezone.utc)
    assert deadlines.lateness_note(deadlines.Standing("s1", due, False, due + timedelta(hours=2)), 9, late, zone) == (
        "Submitted late, by 2 h: 2027-03-02 01:59 (Europe/Berlin), the due date was 2027-03-01 23:59 (Europe/Berlin). "
        "Late policy: late work scores 0. Penalty: 9 point(s).")
    extended = deadlines.Standing("s2", due + timedelta(days=3), True, due + timedelta(hours=2))
    assert deadlines.lateness_note(extended, 0, late, zone).startswith("Submitted on time: 2027-03-02 01:59 (Europe/Berlin), "
                                                                 "your extended due date was 2027-03-04 23:59")
    assert deadlines.lateness_note(deadlines.Standing("s3", None, False, due), 0, late, zone) == ""


# What students read ----------------------------------------------------------


def test_the_due_cell_is_put_on_top_of_released_notebooks_once_and_taken_away(tmp_path):
    room = classroom(tmp_path, policy="penalty", percent=10)
    folder = layout.course_root(room) / "release" / "ex01"
    folder.mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), folder / "ex01.ipynb")
    due = datetime(2027, 3, 1, 22, 59, tzinfo=timezone.utc)
    deadlines.mark_release(room, room.offerings[0], "ex01", due)
    deadlines.mark_release(room, room.offerings[0], "ex01", due + timedelta(days=1))  # a re-release replaces it
    cells = nbformat.read(folder / "ex01.ipynb", as_version=4).cells
    assert [c.cell_type for c in cells] == ["markdown", "code"]
    assert cells[0].source.startswith("**Due: 2027-03-02 23:59 (Europe/Berlin)**")
    assert "10% of the score per day late" in cells[0].source
    deadlines.mark_release(room, room.offerings[0], "ex01", None)
    assert [c.cell_type for c in nbformat.read(folder / "ex01.ipynb", as_version=4).cells] == ["code"]


def test_a_student_reads_the_due_dates_and_only_their_own_extension(tmp_path):
    course = tmp_path / "d2l"
    (course / "extensions").mkdir(parents=True)
    (course / "deadlines.json").write_text(json.dumps({"ex01": {"shown": "2027-03-01 23:59 (UTC)"},
                                                       "ex02": {"shown": "2027-03-08 23:59 (UTC)"}}))
    (course / "extensions" / "student1.json").write_text(json.dumps({"ex02": "2027-03-11 12:00 (UTC)"}))
    assert duedates.due_labels(str(course), "student1") == {
        "ex01": "due 2027-03-01 23:59 (UTC)", "ex02": "due 2027-03-11 12:00 (UTC), extended for you"}
    assert duedates.due_labels(str(course), "student2")["ex02"] == "due 2027-03-08 23:59 (UTC)"
    (course / "deadlines.json").write_text("{not json")
    assert duedates.due_labels(str(tmp_path / "none"), "student1") == {}
    assert duedates.due_labels(str(course), "student2") == {}


def test_the_assignments_tab_lists_the_due_date_and_fetch_and_submit_take_the_plain_name(tmp_path, monkeypatch):
    course = tmp_path / "d2l"
    course.mkdir()
    (course / "deadlines.json").write_text(json.dumps({"ex01": {"shown": "2027-03-01 23:59 (UTC)"}}))
    monkeypatch.setattr(duedates.ExchangeList, "start", lambda self: [
        {"course_id": "d2l", "assignment_id": "ex01"}, {"course_id": "d2l", "assignment_id": "ex02"}])
    lister = duedates.DueDateList.__new__(duedates.DueDateList)
    monkeypatch.setattr(duedates.DueDateList, "root", str(tmp_path), raising=False)
    assert [r["assignment_id"] for r in lister.start()] == ["ex01 · due 2027-03-01 23:59 (UTC)", "ex02"]

    class Base:
        def start(self):
            return self.coursedir.assignment_id

    class Fetch(duedates.PlainName, Base):
        coursedir = type("Dir", (), {"assignment_id": "ex01 · due 2027-03-01 23:59 (UTC)"})()

    assert Fetch().start() == "ex01"


def test_students_nbgrader_config_runs_with_the_due_date_classes(tmp_path):
    (tmp_path / "nbgrader_config.py").write_text(layout.student_config(classroom().offerings, 100 * 2**20))
    factory = PyFileConfigLoader("nbgrader_config.py", path=str(tmp_path)).load_config().ExchangeFactory
    assert {k: v.__name__ for k, v in factory.items()} == {
        "submit": "PrivateSubmit", "list": "DueDateList", "fetch_assignment": "DueDateFetch",
        "fetch_feedback": "DueDateFetchFeedback"}
    assert factory["submit"].__mro__[1].__name__ == "PlainName"


def test_extension_needs_one_of_until_and_days(tmp_path):
    with pytest.raises(GradingError, match="exactly one of --until and --days"):
        deadlines.extend(classroom(tmp_path), classroom().offerings[0], "ex01", "s1", {}, until="2027-03-01", days=2)
    with pytest.raises(GradingError, match="nothing has been released in d2l yet"):
        deadlines.extend(classroom(tmp_path), classroom().offerings[0], "ex01", "s1", {}, days=2)
    assert os.path.exists(tmp_path) and not (tmp_path / "state").exists()


def test_the_latest_submission_counts_collected_or_still_in_the_inbound(tmp_path):
    room = classroom(tmp_path)
    collected = layout.course_root(room) / "submitted" / "s1" / "ex01"
    collected.mkdir(parents=True)
    (collected / "timestamp.txt").write_text("2027-03-01 10:00:00.000000 UTC")
    inbound = layout.inbound_dir(room)
    inbound.mkdir(parents=True)
    (inbound / "s1+ex01+2027-03-02 09:30:00.000000 UTC+abc").mkdir()  # submitted again since
    (inbound / "s2+ex01+2027-02-28 08:00:00.000000 UTC+def").mkdir()
    (inbound / "s3+ex02+2027-02-28 08:00:00.000000 UTC+ghi").mkdir()  # another exercise
    (inbound / "s4+ex01+not a time+jkl").mkdir()  # nothing nbgrader would write: ignored
    assert deadlines.submission_times(room, room.offerings[0], "ex01") == {
        "s1": datetime(2027, 3, 2, 9, 30, tzinfo=timezone.utc), "s2": datetime(2027, 2, 28, 8, 0, tzinfo=timezone.utc)}


def test_a_backdated_timestamp_gives_way_to_when_the_file_was_written(tmp_path):
    honest, backdated, garbled = (tmp_path / name for name in ("honest", "backdated", "garbled"))
    now = datetime.now(timezone.utc)
    for entry, claim in ((honest, now - timedelta(seconds=20)), (backdated, now - timedelta(days=3)), (garbled, None)):
        entry.mkdir()
        (entry / "timestamp.txt").write_text(claim.strftime("%Y-%m-%d %H:%M:%S.%f UTC") if claim else "yesterday-ish")
    assert deadlines.vouch_timestamp(honest) is None
    assert "that time counts" in deadlines.vouch_timestamp(backdated)
    assert "'yesterday-ish'" in deadlines.vouch_timestamp(garbled)
    for entry in (backdated, garbled):
        written = datetime.strptime((entry / "timestamp.txt").read_text(), "%Y-%m-%d %H:%M:%S.%f UTC")
        assert abs(written.replace(tzinfo=timezone.utc) - now) < timedelta(minutes=1)
        assert deadlines.vouch_timestamp(entry) is None  # corrected once, then left alone
    assert deadlines.vouch_timestamp(tmp_path / "none") is None
