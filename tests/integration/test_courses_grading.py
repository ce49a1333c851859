"""Two courses on one hub, one of them in two sections, graded end to end on real servers and nbgrader:
a student of both courses fetches and submits to each through their Assignments tab; a student of the
other section sees only their own course, and cannot submit to a course they are not in; collect and autograde of
one course never see another's submissions; each offering's formgrader, in its grader's own server,
lists only its own; a grader's server holds the course folder of what they grade and nothing else;
the CLI needs `--course` and refuses a course its caller does not teach; the course folder an older
hub of one course left is moved to its offering's at start, its gradebook kept."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import pytest
from harness import ACCOUNTS, REPO, launched_hub, roster_password, running_servers
from hubclient import Browser
from nbgrader.api import Gradebook
from typer.testing import CliRunner

from d2lhub import homefs, labels
from d2lhub.cli import app
from d2lhub.grading import layout

pytestmark = pytest.mark.integration
NAME = "ex01-tensors-autograd"
FIXTURES = REPO / "assignments" / "fixtures" / NAME
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
COURSES = [
    {"id": "intro", "name": "Intro", "source": str(REPO / "course"), "assignments": str(REPO / "assignments"),
     "sections": [{"id": "a", "name": "Tuesday"}, {"id": "b", "name": "Thursday"}]},
    {"id": "adv", "name": "Advanced", "source": str(REPO / "course"), "assignments": str(REPO / "assignments"),
     "timezone": "Europe/Berlin"},
]
ENROLLED = {"student1": ("student", ["intro/a", "adv"]), "student2": ("student", ["intro/b"]),
            "teacher": ("instructor", ["intro/a"]), "boss": ("admin", [])}
# Who is in which offering, as the instructors import it (`roster import --course`).
ROSTERS = {"intro/a": "student1,Ada,One,,student\nteacher,Tea,Cher,,instructor\n",
           "intro/b": "student2,Bo,Two,,student\nprof,Pro,Fessor,,instructor\n",
           "adv": "student1,Ada,One,,student\nprof,Pro,Fessor,,instructor\n"}
LEGACY = "ex00-from-last-term"  # in the older hub's gradebook
WORK = {("student1", "intro-a"): "correct", ("student1", "adv"): "partial", ("student2", "intro-b"): "broken"}


def one_course_from_before(classroom) -> None:
    """The state an older hub of one course (`course: {id: adv}`) left: its course folder, `grading/course/`."""
    folder = layout.grading_dir(classroom) / "course"
    folder.mkdir(parents=True)
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # nbgrader runs `alembic`
    with Gradebook(f"sqlite:///{folder / 'gradebook.db'}", "adv") as gb:
        gb.add_assignment(LEGACY)


@pytest.fixture(scope="module")
def hub(tmp_path_factory, docker_client):
    accounts = [{"name": n, "role": role, "password": ACCOUNTS[n], "courses": refs} for n, (role, refs) in ENROLLED.items()]
    started = launched_hub(tmp_path_factory.mktemp("courses"), docker_client, prepare=one_course_from_before,
                           course=None, courses=COURSES, auth={"accounts": accounts})
    running = next(started)
    try:
        # The hub's start moved the older course folder to its offering's (its gradebook names adv).
        room = running.classroom
        moved = layout.course_root(room, next(o for o in room.offerings if o.id == "adv")) / "gradebook.db"
        assert not (layout.grading_dir(room) / "course").exists() and moved.is_file()
        yield running
    finally:
        next(started, None)  # stop it, remove what it made


def cli(hub, *args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(app, [*args, "--config", str(hub.path)], env={"COLUMNS": "300"})
    assert (result.exit_code == 0) is ok, f"d2lhub {' '.join(args)}: {result.output}"
    return result.output


def tab(browser, action: str, course: str) -> dict:
    """What the Assignments tab does: nbgrader's server extension in the student's own server."""
    headers = {"X-XSRFToken": browser.session.cookies.get("_xsrf", path=f"/user/{browser.name}/") or ""}
    url = browser.url(f"/user/{browser.name}/assignments/{action}")
    response = browser.session.post(url, data={"course_id": course, "assignment_id": NAME}, headers=headers, timeout=180)
    response.raise_for_status()
    return response.json()


def listed(browser, course: str = "") -> list[dict]:
    """The Assignments tab's list (one course, or with none named every course the student is in)."""
    response = browser.session.get(browser.url(f"/user/{browser.name}/assignments"), params={"course_id": course}, timeout=180)
    response.raise_for_status()
    assert response.json()["success"], response.json()
    return response.json()["value"]


def formgraded(browser) -> tuple[int, set[str]]:
    """What the formgrader in the grader's own server lists (its own HTTP API): NAME's submissions, its students."""
    assignments = browser.session.get(browser.url(f"/user/{browser.name}/formgrader/api/assignments"), timeout=60)
    assert assignments.status_code == 200, assignments.text[:300]
    (row,) = [a for a in assignments.json() if a["name"] == NAME]
    students = browser.session.get(browser.url(f"/user/{browser.name}/formgrader/api/students"), timeout=60).json()
    return row["num_submissions"], {s["id"] for s in students}


def mounted(docker_client, hub, name: str) -> list[str]:
    instance = hub.classroom.spawner.instance
    (container,) = docker_client.containers.list(filters={"label": [f"{labels.INSTANCE}={instance}", f"{labels.USER}={name}"]})
    return [m["Source"] for m in container.attrs["Mounts"]]


@pytest.fixture(scope="module")
def servers(hub, tmp_path_factory):
    folder = tmp_path_factory.mktemp("rosters")
    # Several offerings: a grading verb must say which.
    refused = cli(hub, "assignment", "release", NAME, ok=False)
    assert "several courses and sections: give --course (one of intro/a, intro/b, adv)" in refused
    for ref, rows in ROSTERS.items():
        (folder / "class.csv").write_text("username,first name,last name,email,role\n" + rows)
        cli(hub, "roster", "import", str(folder / "class.csv"), "--course", ref)
    assert "due 2027-03-01 23:59 (UTC)" in cli(hub, "assignment", "release", NAME, "--course", "intro/a", "--due", "2027-03-01 23:59")
    cli(hub, "assignment", "release", NAME, "--course", "intro-b")  # the nbgrader id names it too
    assert "due 2027-03-08 12:00 (Europe/Berlin)" in cli(hub, "assignment", "release", NAME, "--course", "adv", "--due", "2027-03-08 12:00")
    assert "student1 has until 2027-03-10 12:00 (Europe/Berlin)" in cli(
        hub, "assignment", "extend", NAME, "student1", "--days", "2", "--course", "adv")
    prof = Browser(hub.url)
    assert prof.login("prof", roster_password(hub.classroom, "prof")).status_code == 302
    browsers = {"student1": hub.browser("student1"), "student2": hub.browser("student2"),
                "teacher": hub.browser("teacher"), "prof": prof}
    yield from running_servers(browsers, 2)


def test_each_course_gets_its_own_submissions_and_nothing_of_the_others(hub, servers, docker_client):
    student1, student2 = servers["student1"], servers["student2"]

    # student1 studies in two courses: the tab lists each, with each one's due date (and their own extension).
    assert tab(student1, "fetch", "intro-a")["success"]
    courses = student1.session.get(student1.url("/user/student1/courses"), timeout=60).json()
    assert courses == {"success": True, "value": ["adv", "intro-a"]}, courses
    seen = {(a["course_id"], a["assignment_id"]) for a in listed(student1)}
    assert (("intro-a", f"{NAME} · due 2027-03-01 23:59 (UTC)") in seen
            and ("adv", f"{NAME} · due 2027-03-10 12:00 (Europe/Berlin), extended for you") in seen), seen
    assert not [c for c, _ in seen if c == "intro-b"]
    assert sorted(student1.list_dir("exercises")) == ["adv", "intro-a"]  # nbgrader's multi-course layout
    # student2 is in one section: one course, laid out as on a hub of one course.
    assert {a["course_id"] for a in listed(student2)} == {"intro-b"}
    assert student2.list_dir("exercises") == [NAME]

    for (name, course), fixture in WORK.items():
        browser = servers[name]
        folder = f"exercises/{course}/{NAME}" if name == "student1" else f"exercises/{NAME}"
        notebook = json.loads((FIXTURES / f"{fixture}.ipynb").read_text())
        browser.server_api("PUT", f"/contents/{folder}/{NAME}.ipynb",
                           json={"type": "notebook", "format": "json", "content": notebook}).raise_for_status()
        assert tab(browser, "submit", course).get("success", True) is not False

    # A course student2 is not in: nothing of it in their server, and nbgrader cannot submit to it.
    attempt = student2.execute(f"""
import os, subprocess
print(sorted(os.listdir({layout.EXCHANGE_MOUNT!r})))
run = subprocess.run(["nbgrader", "submit", os.path.expanduser("~/exercises/{NAME}"), "--course", "adv"],
                     capture_output=True, text=True)
print(run.returncode, "Inbound directory doesn't exist" in run.stdout + run.stderr)
""")
    assert attempt.error is None, attempt
    assert attempt.stdout.split("\n")[:2] == ["['intro-b']", "1 True"], attempt.stdout
    assert all(homefs.mounted_type(layout.inbound_dir(hub.classroom, o)) == "btrfs" for o in hub.classroom.offerings)
    inbound = {o.id: sorted(p.name.split("+")[0] for p in layout.inbound_dir(hub.classroom, o).iterdir())
               for o in hub.classroom.offerings}
    assert inbound == {"intro-a": ["student1"], "intro-b": ["student2"], "adv": ["student1"]}, inbound

    # Collect and autograde one course: its own submissions only, each scored as that course's work.
    assert "collected 1, rejected 0" in cli(hub, "assignment", "collect", NAME, "--course", "intro/a")
    graded = cli(hub, "assignment", "autograde", NAME, "--course", "intro/a")
    assert f"student1 │ {EXPECTED['correct']} / 10" in graded and "student2" not in graded, graded
    assert "collected 1, rejected 0" in cli(hub, "assignment", "collect", NAME, "--course", "adv")
    graded = cli(hub, "assignment", "autograde", NAME, "--course", "adv")
    assert f"student1 │ {EXPECTED['partial']} / 10" in graded and "student2" not in graded, graded
    submitted = {o.id: sorted(p.name for p in (layout.course_root(hub.classroom, o) / "submitted").glob("*"))
                 for o in hub.classroom.offerings}
    assert submitted == {"intro-a": ["student1"], "intro-b": [], "adv": ["student1"]}, submitted
    out = hub.classroom.hub.state_dir / "adv.csv"
    cli(hub, "grades", "export", "--course", "adv", "--out", str(out))
    rows = {r["username"]: r for r in csv.DictReader(out.open())}
    assert set(rows) == {"student1"} and float(rows["student1"][NAME]) == EXPECTED["partial"]

    # Each offering's formgrader, in its grader's own server, lists its own submissions; a grader's server
    # holds the course folders of what they grade (teacher: section a; prof: section b and adv), no other.
    assert formgraded(servers["teacher"]) == (1, {"student1"})  # intro-a: student1's, collected
    assert formgraded(servers["prof"]) == (0, {"student2"})  # the first prof grades, intro-b: none collected
    for grader, own in (("teacher", {"intro-a"}), ("prof", {"intro-b", "adv"})):
        sources = mounted(docker_client, hub, grader)
        assert {s.rsplit("/", 1)[1] for s in sources if "/grading/courses/" in s} == own, sources
        assert not [s for s in sources if "/exchange/" in s and s.split("/exchange/")[1].split("/")[0] not in own], sources
    assert not [s for s in mounted(docker_client, hub, "student1") if "/grading/courses/" in s]  # students: none
    # prof chooses the formgrader's course, as instructor.md says, and restarts their server.
    prof = servers["prof"]
    chosen = prof.execute("import os; os.makedirs(os.path.expanduser('~/.d2lhub'), exist_ok=True); "
                          "open(os.path.expanduser('~/.d2lhub/formgrader'), 'w').write('adv\\n')")
    assert chosen.error is None, chosen
    prof.stop()
    prof.spawn(timeout=300)
    prof.open_server()
    assert formgraded(prof) == (1, {"student1"})  # adv: student1's partial work, collected


def test_the_cli_refuses_a_course_its_caller_does_not_teach(hub, servers):
    teacher = servers["teacher"]
    made = teacher.hub_api("POST", "/users/teacher/tokens", json={"note": "grading from the terminal"})
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    refused = cli(hub, "assignment", "list", "--course", "adv", "--token", token, ok=False)
    assert "teacher does not teach adv" in refused and "formgrade-adv" in refused, refused
    refused = cli(hub, "grades", "export", "--course", "intro/b", "--token", token, ok=False)
    assert "teacher does not teach intro/b" in refused
    own = cli(hub, "assignment", "list", "--course", "intro/a", "--token", token)
    assert "intro/a: exercises" in own and NAME in own and LEGACY not in own
    assert LEGACY in cli(hub, "assignment", "list", "--course", "adv")  # the older hub's gradebook, kept
    assert "does not accept the token" in cli(hub, "assignment", "list", "--course", "adv", "--token", "not-a-token", ok=False)
