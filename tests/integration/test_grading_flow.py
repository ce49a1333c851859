"""Release -> fetch -> submit -> collect -> sandboxed autograde -> feedback -> grades, on a real hub
with real student containers, and what student2 can do against student1's work from inside their own."""

from __future__ import annotations

import csv
import json

import pytest
from harness import REPO, running_servers
from typer.testing import CliRunner

from d2lhub.cli import app
from d2lhub.grading import layout

pytestmark = pytest.mark.integration
NAME = "ex01-tensors-autograd"
FIXTURES = REPO / "assignments" / "fixtures" / NAME
WORK = {"student1": "correct", "student2": "partial", "student3": "broken"}
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
INBOUND = f"{layout.EXCHANGE_MOUNT}/d2l/inbound"


def cli(hub, *args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--config", str(hub.path)])
    assert result.exit_code == 0, f"d2lhub {' '.join(args)}: {result.output}"
    return result.output


def nbgrader(browser, action: str) -> dict:
    """What the Assignments tab does: nbgrader's server extension in the student's own server."""
    url = browser.url(f"/user/{browser.name}/assignments/{action}")
    headers = {"X-XSRFToken": browser.session.cookies.get("_xsrf", path=f"/user/{browser.name}/") or ""}
    response = browser.session.post(url, data={"course_id": "d2l", "assignment_id": NAME}, headers=headers, timeout=180)
    response.raise_for_status()
    return response.json()


def sign_in(hub, name: str):
    if name == "student3":  # created by the roster import, with a generated password
        from hubclient import Browser

        rows = csv.DictReader((hub.classroom.hub.state_dir / "roster-passwords.csv").open())
        password = next(r["password"] for r in rows if r["username"] == name)
        browser = Browser(hub.url)
        assert browser.login(name, password).status_code == 302
        return browser
    return hub.browser(name)


@pytest.fixture(scope="module")
def students(hub, tmp_path_factory):
    roster = tmp_path_factory.mktemp("roster") / "class.csv"
    roster.write_text(
        "username,first name,last name,email,role\n"
        "student1,Ada,One,ada@example.org,student\nstudent2,Bo,Two,,student\n"
        "student3,Cy,Three,cy@example.org,student\nteacher,Tea,Cher,,instructor\n"
    )
    assert "1 user(s) created" in cli(hub, "roster", "import", str(roster))
    cli(hub, "assignment", "release", NAME)
    browsers = {name: sign_in(hub, name) for name in WORK}
    yield from running_servers(browsers, 3)


def test_submit_autograde_feedback_and_no_student_touches_another(hub, students):
    for name, fixture in WORK.items():
        browser = students[name]
        listed = nbgrader(browser, "fetch")
        assert listed.get("success"), listed
        assert any(a["assignment_id"] == NAME and a["status"] == "fetched" for a in listed["value"]), listed
        notebook = json.loads((FIXTURES / f"{fixture}.ipynb").read_text())
        response = browser.server_api("PUT", f"/contents/exercises/{NAME}/{NAME}.ipynb", json={"type": "notebook", "format": "json", "content": notebook})
        response.raise_for_status()
        submitted = nbgrader(browser, "submit")
        assert submitted.get("success", True) is not False, submitted

    inbound = layout.inbound_dir(hub.classroom)
    (entry_of_a,) = [p.name for p in inbound.iterdir() if p.name.startswith("student1+")]
    attack = students["student2"].execute(f"""
import os, shutil, subprocess
inbound, a = {INBOUND!r}, {INBOUND!r} + "/" + {entry_of_a!r}
def attempt(action):
    try:
        action()
        return "done"
    except OSError as exc:
        return type(exc).__name__
print("list", attempt(lambda: os.listdir(inbound)))
print("read", attempt(lambda: open(a + "/{NAME}.ipynb").read()))
print("overwrite", attempt(lambda: open(a + "/{NAME}.ipynb", "w").write("{{}}")))
print("rename", attempt(lambda: os.rename(a, inbound + "/mine")))
print("feedback", attempt(lambda: os.listdir({layout.EXCHANGE_MOUNT!r} + "/d2l/feedback")))
print("outbound", attempt(lambda: open({layout.EXCHANGE_MOUNT!r} + "/d2l/outbound/{NAME}/{NAME}.ipynb", "a").write("x")))
forged = inbound + "/student1+{NAME}+2099-01-01 00:00:00.000000 UTC+forged"
def forge():
    shutil.copytree(os.path.expanduser("~/exercises/{NAME}"), forged)
    open(forged + "/timestamp.txt", "w").write("2099-01-01 00:00:00.000000 UTC")
print("forge", attempt(forge))
env = dict(os.environ, JUPYTERHUB_USER="student1")
run = subprocess.run(["nbgrader", "submit", "{NAME}"], cwd=os.path.expanduser("~"), env=env, capture_output=True, text=True)
print("submit-as-a", run.returncode)
""")
    assert attack.error is None, attack
    outcome = dict(line.split(" ", 1) for line in attack.stdout.strip().splitlines())
    assert outcome["list"] == "PermissionError"
    assert outcome["read"] == "PermissionError"
    assert outcome["overwrite"] == "PermissionError"
    assert outcome["rename"] == "PermissionError"
    assert outcome["feedback"] == "PermissionError"
    assert outcome["outbound"] in {"PermissionError", "OSError"}  # read-only mount
    assert outcome["forge"] == "done" and outcome["submit-as-a"] == "0"  # both land, and collect must refuse them

    collected = cli(hub, "assignment", "collect", NAME)
    rejected = sorted((layout.course_root(hub.classroom) / "rejected").iterdir())
    assert len(rejected) == 2 and all(p.name.startswith("student1+") for p in rejected), collected
    assert "rejected" in collected

    graded = cli(hub, "assignment", "autograde", NAME)
    for name, fixture in WORK.items():  # the summary table
        assert f"{name} │ {EXPECTED[fixture]} / 10" in graded, graded
    out = hub.classroom.hub.state_dir / "grades.csv"
    cli(hub, "grades", "export", "--out", str(out))
    rows = {r["username"]: r for r in csv.DictReader(out.open())}
    for name, fixture in WORK.items():
        assert float(rows[name][NAME]) == EXPECTED[fixture], rows[name]
        assert float(rows[name]["total"]) == EXPECTED[fixture]
    assert rows["student1"]["first_name"] == "Ada"

    cli(hub, "assignment", "feedback", NAME)
    for name, fixture in WORK.items():
        browser = students[name]
        nbgrader(browser, "fetch_feedback")
        (stamp,) = browser.list_dir(f"exercises/{NAME}/feedback")
        html = browser.read_file(f"exercises/{NAME}/feedback/{stamp}/{NAME}.html")
        assert f"{EXPECTED[fixture]}" in html and NAME in html

    # The instructor grades by hand in the formgrader of their own server, on the same gradebook.
    teacher = hub.browser("teacher")
    teacher.spawn()
    teacher.open_server()
    listing = teacher.session.get(teacher.url("/user/teacher/formgrader/api/assignments"), timeout=60)
    assert listing.status_code == 200, listing.text[:300]
    (assignment,) = [a for a in listing.json() if a["name"] == NAME]
    assert assignment["num_submissions"] == len(WORK)
    student_view = students["student1"].session.get(students["student1"].url("/user/student1/formgrader"), timeout=60)
    assert student_view.status_code == 404  # students' servers have no formgrader
