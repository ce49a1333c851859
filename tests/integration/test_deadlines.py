"""Due dates, an extension and the late policy on a real hub, with real nbgrader and sandboxed autograde:
a submission after the due date is marked late and penalised, the same one with an extension is on time,
and the gradebook, `assignment list`, the student's feedback and `grades export` all say so."""

from __future__ import annotations

import csv
import json
import stat
from datetime import datetime, timedelta

import nbformat
import pytest
from harness import REPO, launched_hub, place_collected
from nbgrader.api import Gradebook
from typer.testing import CliRunner

from d2lhub.cli import app
from d2lhub.grading import layout

pytestmark = pytest.mark.integration
NAME = "ex01-tensors-autograd"
CORRECT = (REPO / "assignments" / "fixtures" / NAME / "correct.ipynb").read_text()  # 9 of 10 points
LATE = {"policy": "penalty", "per": "day", "percent": 20, "floor": 50}
# Due 2026-01-10 12:00 in Berlin (11:00 UTC). student1: 3 days 1 h late -> 4 started days -> 80%, held at the
# 50% floor -> 4.5 of 9 lost; student2: the same time, with 4 more days -> on time; student3: early; student4: none.
SUBMITTED = {"student1": "2026-01-13 12:00:00.000000 UTC", "student2": "2026-01-13 12:00:00.000000 UTC",
             "student3": "2026-01-09 08:00:00.000000 UTC"}


@pytest.fixture(scope="module")
def hub(tmp_path_factory, docker_client):
    yield from launched_hub(tmp_path_factory.mktemp("term"), docker_client,
                            course={"timezone": "Europe/Berlin"}, grading={"late": LATE})


def cli(hub, *args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(app, [*args, "--config", str(hub.path)], env={"COLUMNS": "300"})  # tables unwrapped
    assert (result.exit_code == 0) is ok, f"d2lhub {' '.join(args)}: {result.output}"
    return result.output


def test_late_work_is_penalised_an_extension_is_on_time_and_everyone_is_told(hub, tmp_path):
    roster = tmp_path / "class.csv"
    roster.write_text("username,first name,last name,email,role\nstudent1,Ada,One,,student\n"
                      "student2,Bo,Two,,student\nstudent3,Cy,Three,,student\nstudent4,Di,Four,,student\n")
    cli(hub, "roster", "import", str(roster))
    classroom, course = hub.classroom, layout.course_root(hub.classroom)
    source = (REPO / "assignments" / "source" / NAME / f"{NAME}.ipynb").read_text()

    # Bad input is refused with the reason, and nothing is released.
    assert "is not a date and time like 2027-03-01 23:59" in cli(hub, "assignment", "release", NAME, "--due", "next friday", ok=False)
    assert not (course / "release" / NAME).exists()

    released = cli(hub, "assignment", "release", NAME, "--due", "2026-01-10 12:00")
    assert "due 2026-01-10 12:00 (Europe/Berlin)" in released
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "d2l") as gb:
        assert gb.find_assignment(NAME).duedate == datetime(2026, 1, 10, 11, 0)  # nbgrader's naive UTC
    first = nbformat.read(layout.exchange_root(classroom) / "d2l" / "outbound" / NAME / f"{NAME}.ipynb", as_version=4).cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("**Due: 2026-01-10 12:00 (Europe/Berlin)**")
    assert "20% of the score per day late, keeping at least 50%" in first.source
    assert (REPO / "assignments" / "source" / NAME / f"{NAME}.ipynb").read_text() == source  # the source is untouched
    published = json.loads((layout.exchange_root(classroom) / "d2l" / "deadlines.json").read_text())
    assert published[NAME]["shown"] == "2026-01-10 12:00 (Europe/Berlin)"

    # The extension: refused for someone who is no user, recorded in the gradebook for student2.
    assert "nobody" in cli(hub, "assignment", "extend", NAME, "nobody", "--days", "2", ok=False)
    assert "exactly one of --until and --days" in cli(hub, "assignment", "extend", NAME, "student2", ok=False)
    assert "student2 has until 2026-01-14 12:00 (Europe/Berlin)" in cli(hub, "assignment", "extend", NAME, "student2", "--days", "4")
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "d2l") as gb:
        assert gb.find_submission(NAME, "student2").extension == timedelta(days=4)
    own = layout.extension_file(classroom, "student2")
    info = own.stat()
    # student2 has never started a server: root's until their first start hands it to their uid alone
    # (the browser test sees that happen: tests/browser/test_deadlines.py).
    assert stat.S_IMODE(info.st_mode) == 0o400 and info.st_uid == 0
    assert stat.S_IMODE(own.parent.stat().st_mode) == 0o711  # nobody lists whose extension exists
    assert json.loads(own.read_text()) == {NAME: "2026-01-14 12:00 (Europe/Berlin)"}

    for student, stamp in SUBMITTED.items():  # as nbgrader's submit and d2lhub's collect leave them
        folder = place_collected(classroom, student, NAME, CORRECT)
        (folder / "timestamp.txt").write_text(stamp)

    listed = cli(hub, "assignment", "list")
    assert "times in Europe/Berlin" in listed
    (row,) = [line for line in listed.splitlines() if NAME in line]
    cells = [c.strip() for c in row.split("│")[1:-1]]
    assert cells == [NAME, "2026-01-10 12:00", "3", "1", "1", "1"], listed  # submitted, late, missing, ext.

    graded = cli(hub, "assignment", "autograde", NAME)
    assert "student1 │ 4.5 / 10" in graded and "late: -4.5 point(s)" in graded, graded
    assert "student2 │ 9 / 10" in graded and "student3 │ 9 / 10" in graded, graded
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "d2l") as gb:
        assert gb.find_submission(NAME, "student1").late_submission_penalty == pytest.approx(4.5)
        assert gb.find_submission(NAME, "student2").total_seconds_late == 0
        assert gb.find_submission(NAME, "student2").extension == timedelta(days=4)  # autograde kept it

    out = tmp_path / "grades.csv"
    cli(hub, "grades", "export", "--out", str(out))
    rows = {r["username"]: r for r in csv.DictReader(out.open())}
    assert (rows["student1"][NAME], rows["student1"][f"{NAME} late by"], rows["student1"][f"{NAME} penalty"]) == ("4.5", "3 days 1 h", "4.5")
    assert (rows["student2"][NAME], rows["student2"][f"{NAME} late by"], rows["student2"][f"{NAME} penalty"]) == ("9.0", "", "0.0")
    assert rows["student4"][NAME] == "0.0" and float(rows["student1"]["total"]) == 4.5

    cli(hub, "assignment", "feedback", NAME)
    page = {s: (course / "feedback" / s / NAME / f"{NAME}.html").read_text() for s in SUBMITTED}
    assert "Submitted late, by 3 days 1 h" in page["student1"] and "Penalty: 4.5 point(s)" in page["student1"]
    assert "Late submission penalty (Score: -4.5)" in page["student1"]  # nbgrader's own line, from the plugin
    assert "Submitted on time" in page["student2"] and "your extended due date was 2026-01-14 12:00" in page["student2"]
    assert "Late submission penalty" not in page["student2"]
    assert "Submitted on time" in page["student3"] and "the due date was 2026-01-10 12:00" in page["student3"]
    released_pages = [p.read_text() for p in (layout.exchange_root(classroom) / "d2l" / "feedback").glob("*.html")]
    assert sum("Submitted late, by 3 days 1 h" in text for text in released_pages) == 1  # what student1 fetches
    assert sum("your extended due date" in text for text in released_pages) == 1  # what student2 fetches
