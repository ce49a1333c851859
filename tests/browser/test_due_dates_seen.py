"""In Chromium, a student sees each exercise's due date (in the Assignments tab and on the notebook's
first cell) and their own extension, and submits from the tab; another student sees the plain due
date and cannot read the first one's extension."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import nbformat
import pytest
from pages import SPAWN_TIMEOUT_MS, screenshot, sign_in
from playwright.sync_api import expect
from typer.testing import CliRunner

from d2lhub.cli import app
from d2lhub.grading import layout

pytestmark = [pytest.mark.browser, pytest.mark.integration]
EX01, EX02 = "ex01-tensors-autograd", "ex02-linear-regression"


def cli(hub, *args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--config", str(hub.path)], env={"COLUMNS": "300"})  # tables unwrapped
    assert result.exit_code == 0, f"d2lhub {' '.join(args)}: {result.output}"
    return result.output


def test_student_sees_due_dates_and_their_own_extension(hub, page):
    cli(hub, "assignment", "release", EX01, "--due", "2027-03-01 23:59")
    cli(hub, "assignment", "release", EX02, "--due", "2027-03-08 23:59")
    # Before student1 ever started a server: the spawner hands the extension to their uid at start.
    assert "student1 has until 2027-03-11 12:00 (UTC)" in cli(hub, "assignment", "extend", EX02, "student1", "--until", "2027-03-11 12:00")

    sign_in(page, hub, "student1")
    page.wait_for_url(re.compile(r"/user/student1/lab"), timeout=SPAWN_TIMEOUT_MS)
    page.get_by_role("menuitem", name="Nbgrader").click()
    page.get_by_role("menuitem", name="Assignment List").click()
    ex01 = page.locator("#fetched_assignments_list .list_item:not(.nested_list_item)", has_text=f"{EX01} · due 2027-03-01 23:59 (UTC)")
    expect(ex01).to_be_visible(timeout=120_000)  # nbgrader's extensions load on first use
    expect(page.get_by_text(f"{EX02} · due 2027-03-11 12:00 (UTC), extended for you")).to_be_visible()
    screenshot(page, "student-due-dates")

    # Submit from the tab: nbgrader's own submit gets the plain name back.
    ex01.get_by_role("button", name="Submit").click()
    submitted = page.locator("#submitted_assignments_list .list_item", has_text=EX01)
    expect(submitted.first).to_be_visible(timeout=120_000)
    listed = cli(hub, "assignment", "list")
    (row,) = [line for line in listed.splitlines() if EX01 in line]
    assert [c.strip() for c in row.split("│")[1:-1]][2:4] == ["1", "0"], listed  # submitted 1, late 0
    page.goto(f"{hub.url}/user/student1/lab/tree/exercises/{EX01}/{EX01}.ipynb")
    first = page.locator(".jp-NotebookPanel:visible .jp-Cell").first
    expect(first).to_contain_text("Due: 2027-03-01 23:59 (UTC)", timeout=120_000)
    screenshot(page, "student-due-cell")

    student2 = hub.browser("student2")
    student2.spawn(timeout=300)
    student2.open_server()
    response = student2.session.get(student2.url("/user/student2/assignments"), params={"course_id": "d2l"}, timeout=180)
    names = [a["assignment_id"] for a in response.json()["value"]]
    assert f"{EX02} · due 2027-03-08 23:59 (UTC)" in names, names  # the due date, not student1's extension
    peek = student2.execute("""
import os
for name, action in (("read", lambda: open("/srv/nbgrader/exchange/d2l/extensions/student1.json").read()),
                     ("list", lambda: os.listdir("/srv/nbgrader/exchange/d2l/extensions"))):
    try:
        action()
        print(name, "done")
    except OSError as exc:
        print(name, type(exc).__name__)
""")
    assert peek.stdout.split() == ["read", "PermissionError", "list", "PermissionError"], peek
    # student2 hands in a copy claiming to be from 2020, under their own name and uid: the claim gives way.
    forged = student2.execute(f"""
import os, shutil
entry = "{layout.EXCHANGE_MOUNT}/d2l/inbound/student2+{EX01}+2020-01-01 00:00:00.000000 UTC+early"
shutil.copytree(os.path.expanduser("~/exercises/{EX01}"), entry)
open(entry + "/timestamp.txt", "w").write("2020-01-01 00:00:00.000000 UTC")
""")
    assert forged.error is None, forged
    student2.stop()

    # The due cell the student submitted back is an ordinary cell to nbgrader: collect and autograde take it.
    collected = cli(hub, "assignment", "collect", EX01)
    assert "timestamp corrected" in collected and "2020-01-01" in collected, collected
    assert collected.count("timestamp corrected") == 1, collected  # student1's own submit is left as it was
    restamped = (layout.course_root(hub.classroom) / "submitted" / "student2" / EX01 / "timestamp.txt").read_text()
    assert restamped.startswith(str(datetime.now(timezone.utc).year)), restamped
    graded = cli(hub, "assignment", "autograde", EX01)
    assert re.search(r"student1 │ [\d.]+ / 10 │\s*│", graded), graded  # graded, with no note
    autograded = layout.course_root(hub.classroom) / "autograded" / "student1" / EX01 / f"{EX01}.ipynb"
    assert nbformat.read(autograded, as_version=4).cells[0].source.startswith("**Due: 2027-03-01 23:59 (UTC)**")
