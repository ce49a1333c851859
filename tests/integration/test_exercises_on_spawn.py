"""Released exercises are in ~/exercises when a student's real server starts, listed as fetched by the
Assignments tab; the student's edits survive restarts and re-releases (the new release goes beside);
a later release arrives at the next start; fetch and submit from the tab use the same folder."""

from __future__ import annotations

import json
import shutil

import pytest
from harness import REPO, launched_hub

from d2lhub.grading import layout, workflow

pytestmark = pytest.mark.integration
COURSE = "d2l"
FIRST, SECOND, THIRD = "ex01-tensors-autograd", "ex02-linear-regression", "ex03-classifier"
MY_ANSWER = "my answer, kept across restarts"
RELEASED_AGAIN = "This exercise was released again."


@pytest.fixture(scope="module")
def hub(tmp_path_factory, docker_client):
    folder = tmp_path_factory.mktemp("exercises")
    assignments = folder / "assignments"  # a copy: the test re-releases a changed exercise
    shutil.copytree(REPO / "assignments", assignments, ignore=shutil.ignore_patterns("fixtures"))
    yield from launched_hub(folder / "hub", docker_client, course={"assignments": str(assignments)})


def assignments_tab(browser) -> dict[str, dict]:
    """What the Assignments tab shows: nbgrader's assignment_list extension in the student's server."""
    response = browser.session.get(browser.url(f"/user/{browser.name}/assignments"), params={"course_id": COURSE}, timeout=120)
    response.raise_for_status()
    listed = response.json()
    assert listed["success"], listed
    return {a["assignment_id"]: a for a in listed["value"] if a["status"] != "submitted"}


def tab_action(browser, action: str, assignment: str) -> dict:
    headers = {"X-XSRFToken": browser.session.cookies.get("_xsrf", path=f"/user/{browser.name}/") or ""}
    response = browser.session.post(
        browser.url(f"/user/{browser.name}/assignments/{action}"),
        data={"course_id": COURSE, "assignment_id": assignment}, headers=headers, timeout=180,
    )
    response.raise_for_status()
    return response.json()


def notebook(browser, path: str) -> dict:
    response = browser.server_api("GET", f"/contents/{path}?content=1&type=notebook")
    response.raise_for_status()
    return response.json()["content"]


def restart(browser) -> None:
    browser.stop()
    browser.spawn()
    browser.open_server()


def assert_fetched(listed: dict, name: str) -> None:
    entry = listed[name]
    assert entry["status"] == "fetched", entry
    assert entry["path"] == f"exercises/{name}", entry
    assert [nb["path"] for nb in entry["notebooks"]] == [f"exercises/{name}/{name}.ipynb"], entry


def test_released_exercises_arrive_at_start_and_the_students_work_stays(hub):
    workflow.release(hub.classroom, hub.classroom.offerings[0], FIRST)
    student = hub.browser("student1")
    student.spawn()
    student.open_server()
    assert student.list_dir("exercises") == [FIRST]
    assert f"{FIRST}.ipynb" in student.list_dir(f"exercises/{FIRST}")
    assert_fetched(assignments_tab(student), FIRST)
    ran = student.execute(f"import os; print(os.path.isfile(os.path.expanduser('~/exercises/{FIRST}/{FIRST}.ipynb')))")
    assert ran.error is None and ran.stdout.strip() == "True", ran

    path = f"exercises/{FIRST}/{FIRST}.ipynb"
    mine = notebook(student, path)
    mine["cells"].append({"cell_type": "markdown", "id": "student-answer", "metadata": {}, "source": MY_ANSWER})
    response = student.server_api("PUT", f"/contents/{path}", json={"type": "notebook", "format": "json", "content": mine})
    response.raise_for_status()

    restart(student)  # nothing new released: the edit is there, nothing beside it
    assert MY_ANSWER in json.dumps(notebook(student, path))
    assert student.list_dir("exercises") == [FIRST]

    source = hub.classroom.course.assignments / "source" / FIRST / f"{FIRST}.ipynb"
    changed = json.loads(source.read_text())
    changed["cells"].insert(0, {"cell_type": "markdown", "id": "released-again", "metadata": {}, "source": RELEASED_AGAIN})
    source.write_text(json.dumps(changed))
    workflow.release(hub.classroom, hub.classroom.offerings[0], FIRST)  # a new version of the one the student works on
    workflow.release(hub.classroom, hub.classroom.offerings[0], SECOND)
    restart(student)
    assert student.list_dir("exercises") == sorted([FIRST, f"{FIRST}.new", SECOND])
    kept = json.dumps(notebook(student, path))
    assert MY_ANSWER in kept and RELEASED_AGAIN not in kept
    beside = json.dumps(notebook(student, f"exercises/{FIRST}.new/{FIRST}.ipynb"))
    assert RELEASED_AGAIN in beside and MY_ANSWER not in beside
    assert f"{SECOND}.ipynb" in student.list_dir(f"exercises/{SECOND}")
    listed = assignments_tab(student)
    assert_fetched(listed, FIRST)
    assert_fetched(listed, SECOND)

    # The Assignments tab's own fetch and submit work on the same folder.
    workflow.release(hub.classroom, hub.classroom.offerings[0], THIRD)
    assert assignments_tab(student)[THIRD]["status"] == "released"
    fetched = tab_action(student, "fetch", THIRD)
    assert fetched["success"], fetched
    assert f"{THIRD}.ipynb" in student.list_dir(f"exercises/{THIRD}")
    assert_fetched(assignments_tab(student), THIRD)

    submitted = tab_action(student, "submit", FIRST)
    assert submitted.get("success", True) is not False, submitted
    (entry,) = [p for p in layout.inbound_dir(hub.classroom).iterdir() if p.name.startswith(f"student1+{FIRST}+")]
    assert MY_ANSWER in (entry / f"{FIRST}.ipynb").read_text()  # the student's work, from ~/exercises

    restart(student)  # fetched from the tab: left alone, no copy beside it
    assert student.list_dir("exercises") == sorted([FIRST, f"{FIRST}.new", SECOND, THIRD])
    student.stop()
