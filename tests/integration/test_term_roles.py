"""Two courses on one real hub, one of them in two sections: a TA reaches only their own section's
students (JupyterHub role scopes, no admin flag), and each student gets the chapters of the
courses they are in, under ~/d2l/<course>/. Everything through HTTP as a signed-in browser does."""

from __future__ import annotations

import pytest
import yaml
from harness import REPO, RunningHub, remove_labelled, unmount_under, write_classroom
from hubclient import Browser
from test_cli import d2lhub

from d2lhub.state import built_course

pytestmark = pytest.mark.integration

PASSWORDS = {"tina": "tina-pass-123", "ann": "ann-pass-1234", "bob": "bob-pass-1234", "boss": "boss-pass-123"}
ACCOUNTS = [
    {"name": "tina", "role": "ta", "courses": ["intro/a"]},
    {"name": "ann", "role": "student", "courses": ["intro/a", "adv"]},  # in both courses
    {"name": "bob", "role": "student", "courses": ["intro/b"]},  # the other section
    {"name": "boss", "role": "admin"},
]
COURSES = [
    {"id": "intro", "name": "Intro to DL", "source": str(REPO / "course"), "assignments": str(REPO / "assignments"),
     "sections": [{"id": "a", "name": "Tuesday"}, {"id": "b", "name": "Thursday"}]},
    {"id": "adv", "name": "Advanced DL", "source": str(REPO / "tests/fixtures/book"),
     "assignments": str(REPO / "assignments")},
]


@pytest.fixture(scope="module")
def term(tmp_path_factory, docker_client):
    folder = tmp_path_factory.mktemp("term")
    path = write_classroom(folder)
    data = yaml.safe_load(path.read_text())
    del data["course"]
    data["courses"] = COURSES
    data["auth"] = {"accounts": [{**account, "password": PASSWORDS[account["name"]]} for account in ACCOUNTS]}
    path.write_text(yaml.safe_dump(data))
    hub = RunningHub(path)
    built = d2lhub("course", "build", "-c", str(path)).stdout  # what `make course` runs: every course
    for course_id in ("intro", "adv"):
        assert f"{course_id}: " in built and str(built_course(hub.classroom, course_id)) in built, built
    hub.start()
    signed_in: dict[str, Browser] = {}
    try:
        for name in ("ann", "bob"):
            signed_in[name] = browser = signed(hub, name)
            browser.spawn()
        yield hub, signed_in
    finally:
        hub.stop()
        remove_labelled(docker_client, lambda value: value == hub.classroom.spawner.instance)
        unmount_under(hub.classroom.hub.state_dir)


def signed(hub: RunningHub, name: str) -> Browser:
    browser = Browser(hub.url)
    assert browser.login(name, PASSWORDS[name]).status_code == 302, f"sign-in of {name} failed"
    return browser


def test_a_ta_opens_their_sections_servers_and_no_other_and_has_no_admin_page(term):
    hub, _ = term
    tina = signed(hub, "tina")
    # /user/ann/lab: ann's server sends her to the hub's OAuth, which asks her to authorize opening it
    own = tina.authorize(tina.open_server("ann"))
    assert own.status_code == 200 and own.url.endswith("/user/ann/lab"), (own.status_code, own.url)
    assert tina.server_api("GET", "/contents/d2l", owner="ann").status_code == 200

    other = tina.open_server("bob")  # section b: the hub refuses her at its OAuth step
    assert other.status_code == 403, (other.status_code, other.url)
    assert "You do not have permission to access" in other.text
    assert tina.server_api("GET", "/contents/d2l", owner="bob").status_code in (302, 403)  # never bob's files

    assert sorted(tina.hub_api("GET", "/users/ann").json()["groups"]) == ["nbgrader-adv", "nbgrader-intro-a"]
    assert tina.hub_api("GET", "/users/bob").status_code == 404  # not even there, for her
    listed = {user["name"] for user in tina.hub_api("GET", "/users").json()}
    assert "ann" in listed and "bob" not in listed
    assert tina.hub_api("POST", "/users/bob/server").status_code == 404  # nor start or stop his server
    assert tina.session.get(tina.url("/hub/admin"), timeout=30).status_code == 403
    assert tina.hub_api("GET", "/users/tina").json()["admin"] is False


def test_a_student_in_two_courses_gets_both_chapter_sets_and_one_in_one_course_only_theirs(term):
    _, signed_in = term
    ann, bob = signed_in["ann"], signed_in["bob"]
    ann.open_server()
    assert {"adv", "intro"} <= set(ann.list_dir("d2l"))
    assert "ndarray.ipynb" in ann.list_dir("d2l/intro/chapter_preliminaries")
    assert "arrays.ipynb" in ann.list_dir("d2l/adv/part_basics")
    assert "index.ipynb" in ann.list_dir("d2l/adv")
    home = ann.session.get(ann.url("/hub/home"), timeout=30)
    assert "Your courses: Advanced DL, Intro to DL (Tuesday)</p>" in home.text
    assert "Your courses: Intro to DL (Thursday)</p>" in bob.session.get(bob.url("/hub/home"), timeout=30).text
    bob.open_server()
    listing = bob.list_dir("d2l")
    assert "intro" in listing and "adv" not in listing, listing
    assert "ndarray.ipynb" in bob.list_dir("d2l/intro/chapter_preliminaries")


def test_course_build_names_one_course_or_refuses_clearly(term):
    hub, _ = term
    one = d2lhub("course", "build", "-c", str(hub.path), "--course", "adv").stdout
    assert one.startswith("adv: ") and "intro" not in one, one
    unknown = d2lhub("course", "build", "-c", str(hub.path), "--course", "nope", check=False)
    assert unknown.returncode == 2 and "no course 'nope' on this hub (there are: intro, adv)" in unknown.stderr
    source = d2lhub("course", "build", "-c", str(hub.path), "--from", str(REPO / "course"), check=False)
    assert source.returncode == 2 and "name that course with --course" in source.stderr


def test_prestart_reaches_the_students_of_every_course_and_section(term):
    hub, _ = term
    table = d2lhub("prestart", "-c", str(hub.path)).stdout  # ann (intro/a, adv) and bob (intro/b) run already
    assert "2 server(s)" in table, table
    rows = {line.split()[1]: line for line in table.splitlines() if line.split()[1:2] in (["ann"], ["bob"], ["tina"])}
    assert set(rows) == {"ann", "bob"} and all("already running" in row for row in rows.values()), table


def test_course_data_and_check_take_each_course_in_turn(term):
    hub, _ = term
    listed = d2lhub("course", "data", "--list", "-c", str(hub.path)).stdout  # each course's own chapters
    assert "intro: data sets the chapters need" in listed and "adv: data sets the chapters need" in listed, listed
    assert "intro: " in listed and "adv: " in listed
    refused = d2lhub("course", "check", "-c", str(hub.path), "--report", str(hub.path.parent / "r.json"), check=False)
    assert refused.returncode == 2 and "--report is about one course: name that course with --course" in refused.stderr
    manifest = d2lhub("course", "data", "-c", str(hub.path), "--manifest", str(hub.path.parent / "m.json"), check=False)
    assert manifest.returncode == 2 and "--manifest is about one course" in manifest.stderr
