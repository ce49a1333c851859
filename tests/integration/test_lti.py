"""LTI 1.3 end to end: an LMS (tests/integration/ltiplatform.py, on 127.0.0.1) launches students into
their own servers on a real hub; forged, mis-addressed, expired and replayed launches are refused;
`roster sync` reads its membership service; `grades push` posts real autograded scores to its grade
service, and after a failure part-way and a rerun the LMS holds exactly those scores."""

from __future__ import annotations

import json
import stat
import time

import pytest
import requests
from harness import (
    REPO,
    RunningHub,
    launched_hub,
    place_collected,
    remove_labelled,
    write_classroom,
)
from ltiplatform import Platform, launch, replay
from typer.testing import CliRunner

from d2lhub import hubapi, ltistate
from d2lhub.cli import app
from d2lhub.ops.hubprocess import HubError

pytestmark = pytest.mark.integration
NAME = "ex01-tensors-autograd"
FIXTURES = REPO / "assignments" / "fixtures" / NAME
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
NOTEBOOK = "d2l/chapter_preliminaries/ndarray.ipynb"
MANUAL_CELL, MAXIMUM = "why-record", 10  # the exercise's written answer (1 point) and its total


@pytest.fixture(scope="module")
def platform():
    lms = Platform()
    lms.add_user("sub-ada-01", "ada@uni.example", "Learner")
    lms.add_user("sub-bo-02", "bo@uni.example", "Learner")
    lms.add_user("sub-cy-03", "cy@uni.example", "Learner")
    lms.add_user("sub-tea-04", "tea@uni.example", "Instructor")
    lms.add_user("sub-max-05", "max@uni.example", "Mentor")  # no classroom role: neither launched nor synced
    yield lms
    lms.stop()


@pytest.fixture(scope="module")
def lti_hub(platform, tmp_path_factory, docker_client):
    auth = {"kind": "lti13", "accounts": [], "lti13": platform.settings()}
    hubs = launched_hub(tmp_path_factory.mktemp("lti"), docker_client, auth=auth)
    hub = next(hubs)
    platform.tool_launch_url = f"{hub.url}/hub/lti13/oauth_callback"
    platform.tool_jwks_url = f"{hub.url}/hub/lti13/jwks"
    yield hub
    next(hubs, None)


def cli(hub, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, [*args, "--config", str(hub.path)])
    assert result.exit_code == code, f"d2lhub {' '.join(args)}: {result.output}"
    return result.output


def members(hub, group: str) -> set[str]:
    return set(hubapi.api(hub.classroom, f"/groups/{group}").json()["users"])


def test_a_launch_lands_the_student_in_their_own_server_on_the_linked_notebook(platform, lti_hub):
    session = requests.Session()  # the student's browser
    answer, _, _ = launch(platform, lti_hub.url, "sub-ada-01", session=session, path=NOTEBOOK)
    assert answer.status_code == 302, answer.text[:500]
    assert answer.headers["Location"] == f"/hub/user-redirect/lab/tree/{NOTEBOOK}"
    session.get(lti_hub.url + answer.headers["Location"], timeout=60)  # starts the server, as the browser would
    deadline = time.monotonic() + 240
    while not ((session.get(f"{lti_hub.url}/hub/api/users/ada", timeout=30).json().get("servers") or {}).get("", {}).get("ready")):
        assert time.monotonic() < deadline, "ada's server was not ready in time"
        time.sleep(1)
    landed = session.get(lti_hub.url + answer.headers["Location"], timeout=60)
    assert landed.status_code == 200 and landed.url.endswith(f"/user/ada/lab/tree/{NOTEBOOK}"), landed.url
    notebook = session.get(f"{lti_hub.url}/user/ada/api/contents/{NOTEBOOK}?content=0", timeout=60)
    assert notebook.status_code == 200 and notebook.json()["type"] == "notebook"
    assert "ada" in members(lti_hub, "nbgrader-d2l") and "ada" not in members(lti_hub, "formgrade-d2l")
    # the tool's key: 0600 in the state folder, its public half served for the platform
    key = ltistate.key_files(lti_hub.classroom.hub.state_dir)[-1]
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    served = session.get(platform.tool_jwks_url, timeout=30).json()
    assert [k["kid"] for k in served["keys"]] == [key.stem] and "d" not in served["keys"][0]
    hubapi.api(lti_hub.classroom, "/users/ada/server", "DELETE")
    target = f"{lti_hub.url}/hub/user-redirect/lab/tree/exercises"  # a link that names its page by its target URI
    by_target, _, _ = launch(platform, lti_hub.url, "sub-ada-01", target=target)
    assert by_target.status_code == 302 and by_target.headers["Location"] == "/hub/user-redirect/lab/tree/exercises"
    sign_in_page = requests.get(f"{lti_hub.url}/hub/login", timeout=30).text
    assert "Open this classroom from your course in the LMS" in sign_in_page and 'name="password"' not in sign_in_page


def test_forged_misaddressed_expired_and_replayed_launches_are_refused(platform, lti_hub):
    platform.next_launch = {"forge": True}
    forged, _, _ = launch(platform, lti_hub.url, "sub-ada-01")
    assert forged.status_code == 400 and "Signature verification failed" in forged.text, forged.text[:300]
    platform.next_launch = {"aud": "another-tool"}
    misaddressed, _, _ = launch(platform, lti_hub.url, "sub-ada-01")
    assert misaddressed.status_code == 401 and "audience" in misaddressed.text.lower(), misaddressed.text[:300]
    now = int(time.time())
    platform.next_launch = {"iat": now - 400, "exp": now - 100}
    expired, _, _ = launch(platform, lti_hub.url, "sub-ada-01")
    assert expired.status_code == 400 and "expired" in expired.text.lower(), expired.text[:300]
    good, (action, form), cookies = launch(platform, lti_hub.url, "sub-ada-01")
    assert good.status_code == 302
    replayed = replay(action, form, cookies)
    assert replayed.status_code == 403 and "replayed nonce" in replayed.text, replayed.text[:300]
    platform.next_launch = {"https://purl.imsglobal.org/spec/lti/claim/context": {"id": "other-course", "label": "X"}}
    elsewhere, _, _ = launch(platform, lti_hub.url, "sub-ada-01")
    assert elsewhere.status_code == 403 and "other-course" in elsewhere.text, elsewhere.text[:300]
    platform.next_launch = {"https://purl.imsglobal.org/spec/lti/claim/deployment_id": "dep-other"}
    other_deployment, _, _ = launch(platform, lti_hub.url, "sub-ada-01")
    assert other_deployment.status_code == 403 and "dep-other" in other_deployment.text, other_deployment.text[:300]
    mentor, _, _ = launch(platform, lti_hub.url, "sub-max-05")
    assert mentor.status_code == 403 and "auth.lti13.roles" in mentor.text, mentor.text[:300]
    for refused in (forged, misaddressed, expired, replayed, elsewhere, other_deployment, mentor):
        assert "jupyterhub-session-id" not in refused.cookies and "jupyterhub-hub-login" not in refused.cookies


def test_roster_sync_reads_the_membership_service(platform, lti_hub):
    first = cli(lti_hub, "roster", "sync")
    assert "3 added, 0 changed, 0 dropped, 1 unchanged" in first, first
    for line in ("bo", "cy", "tea"):
        assert line in first
    assert members(lti_hub, "nbgrader-d2l") == {"ada", "bo", "cy"}
    assert members(lti_hub, "formgrade-d2l") == {"tea"}
    assert "max" not in {u["name"] for u in hubapi.api(lti_hub.classroom, "/users").json()}
    again = cli(lti_hub, "roster", "sync")
    assert "0 added, 0 changed, 0 dropped, 4 unchanged" in again, again

    platform.users["sub-bo-02"]["status"] = "Inactive"
    dropped = cli(lti_hub, "roster", "sync")
    assert "0 added, 0 changed, 1 dropped" in dropped and "bo" in dropped, dropped
    assert members(lti_hub, "nbgrader-d2l") == {"ada", "cy"}
    assert "bo" in {u["name"] for u in hubapi.api(lti_hub.classroom, "/users").json()}  # disabled, not deleted
    refused, _, _ = launch(platform, lti_hub.url, "sub-bo-02")
    assert refused.status_code == 403 and "dropped" in refused.text, refused.text[:300]


def test_grades_push_posts_autograded_scores_and_a_rerun_completes_it(platform, lti_hub):
    cli(lti_hub, "assignment", "release", NAME)
    place_collected(lti_hub.classroom, "ada", NAME, (FIXTURES / "correct.ipynb").read_text())
    place_collected(lti_hub.classroom, "cy", NAME, (FIXTURES / "partial.ipynb").read_text())
    cli(lti_hub, "assignment", "autograde", NAME)
    platform.refuse_scores_once = {"sub-cy-03"}  # the LMS fails part-way

    first = cli(lti_hub, "grades", "push", NAME, code=1)
    assert "1 sent, 0 unchanged, 1 skipped, 1 refused" in first, first
    [item] = platform.lineitems.values()
    assert item["resourceId"] == NAME and item["scoreMaximum"] == MAXIMUM
    ada = platform.scores[item["id"]]["sub-ada-01"]
    assert (ada["scoreGiven"], ada["gradingProgress"]) == (EXPECTED["correct"], "PendingManual")

    grade_by_hand(lti_hub, {"ada": 1, "cy": 0})  # the formgrader's part: the written answer
    cli(lti_hub, "lti", "rotate-key")  # a new key signs the rerun's requests; nobody is lost
    second = cli(lti_hub, "grades", "push", NAME)
    assert "2 sent, 0 unchanged, 1 skipped, 0 refused" in second, second
    gradebook = {"sub-ada-01": (EXPECTED["correct"] + 1, "FullyGraded"), "sub-cy-03": (EXPECTED["partial"], "FullyGraded")}
    assert held_by(platform, item) == gradebook  # after two runs: exactly the gradebook's scores
    third = cli(lti_hub, "grades", "push", NAME)
    assert "0 sent, 2 unchanged, 1 skipped, 0 refused" in third, third
    assert held_by(platform, item) == gradebook and list(platform.lineitems.values()) == [item]


def held_by(platform, item) -> dict:
    return {user: (s["scoreGiven"], s["gradingProgress"]) for user, s in platform.scores[item["id"]].items()}


def grade_by_hand(hub, points: dict[str, float]) -> None:
    """What a grader does in the formgrader: score the manually graded cell of each submission."""
    from d2lhub.grading import workflow

    with workflow.gradebook(hub.classroom, hub.classroom.offerings[0]) as gb:
        for student, score in points.items():
            grade = gb.find_grade(MANUAL_CELL, NAME, NAME, student)
            grade.manual_score, grade.needs_manual_grade = score, False  # as the formgrader's grade API does
        gb.db.commit()


def test_an_lms_that_gives_no_keys_stops_the_start_naming_the_key(platform, tmp_path, docker_client):
    silent = {**platform.settings(), "jwks_url": "http://127.0.0.1:9/jwks"}  # nothing listens on port 9
    hub = RunningHub(write_classroom(tmp_path, auth={"kind": "lti13", "accounts": [], "lti13": silent}))
    try:
        with pytest.raises(HubError, match=r"auth\.lti13\.jwks_url: http://127\.0\.0\.1:9/jwks gives no key set"):
            hub.start()
    finally:
        hub.stop()
        remove_labelled(docker_client, lambda value: value == hub.classroom.spawner.instance)
