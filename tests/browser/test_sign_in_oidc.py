"""OpenID Connect sign-in through Chromium against a real provider (node-oidc-provider on 127.0.0.1),
on a class that ran with native passwords first: the switch keeps every student's files and grades."""

from __future__ import annotations

import html
import os
import re
import secrets
import sqlite3
import time
from urllib.parse import urljoin

import pytest
import requests
import yaml
from harness import RunningHub, launched_hub, write_classroom
from identity import oidc_provider
from pages import SPAWN_TIMEOUT_MS, screenshot
from playwright.sync_api import expect
from test_cli import d2lhub

from d2lhub import hubapi, state
from d2lhub.grading import workflow as grading
from d2lhub.ops.hubprocess import HubError

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CODE_TTL = 5  # seconds an authorization code lives at the provider
USERS = {  # the provider's people: the class's old user names, their provider passwords and groups
    "student1": {"password": "student1-sso-pw", "groups": ["cs101-students"]},
    "student2": {"password": "student2-sso-pw", "groups": ["cs101-students", "library"]},
    "teacher": {"password": "teacher-sso-pw", "groups": ["cs101-staff"]},
    "mallory": {"password": "mallory-sso-pw", "groups": ["chemistry"]},
}
PROOF = "switch-proof.txt"


def oidc_auth(issuer: str) -> dict:
    return {"kind": "oidc", "accounts": [{"name": "boss", "role": "admin"}], "oidc": {
        "issuer": issuer, "client_id": "d2lhub", "scopes": ["openid", "profile", "groups"],
        "roles": {"student": ["cs101-students"], "instructor": ["cs101-staff"]}}}


@pytest.fixture(scope="module")
def switched(tmp_path_factory, docker_client):
    """A native class where student1 keeps a file and has a grade, then switched to oidc."""
    folder = tmp_path_factory.mktemp("oidcclass")
    hubs = launched_hub(folder, docker_client)
    hub = next(hubs)
    try:
        browser = hub.browser("student1")
        browser.spawn()
        browser.open_server()
        browser.write_file(PROOF, "written while the class signed in with passwords")
        browser.stop()
        with grading.gradebook(hub.classroom, hub.classroom.offerings[0]) as book:
            book.add_assignment("switch-check")
            book.add_student("student1")
            book.add_submission("switch-check", "student1")
        before = hub_user_ids(hub)
        hub.stop()
        secret = secrets.token_urlsafe(24)
        with oidc_provider(folder, f"{hub.url}/hub/oauth_callback", secret, USERS, CODE_TTL) as issuer:
            oidc_hub = switch_to_oidc(hub, issuer, secret)
            try:
                yield oidc_hub, before
            finally:
                oidc_hub.stop()
    finally:
        next(hubs, None)


def hub_user_ids(hub: RunningHub) -> dict[str, int]:
    """Hub user name -> id, from the hub's database (the id makes the uid: uid_base + id)."""
    with sqlite3.connect(hub.classroom.hub.state_dir / "jupyterhub.sqlite") as db:
        return dict(db.execute("SELECT name, id FROM users"))


def switch_to_oidc(hub: RunningHub, issuer: str, secret: str) -> RunningHub:
    """Rewrite classroom.yaml's auth: section; start-up refuses without the client secret, then starts with it."""
    data = yaml.safe_load(hub.path.read_text())
    data["auth"] = oidc_auth(issuer)
    hub.path.write_text(yaml.safe_dump(data))
    switched_hub = RunningHub(hub.path)
    assert "D2LHUB_OIDC_CLIENT_SECRET" not in os.environ
    with pytest.raises(HubError, match=r"auth.oidc.client_secret: no secret: set \$D2LHUB_OIDC_CLIENT_SECRET"):
        switched_hub.start()
    state.write_private(state.in_state(switched_hub.classroom, "oidc_client_secret"), secret)
    switched_hub.start()
    return switched_hub


def sso_sign_in(page, hub, name: str, password: str | None = None, next_path: str = "") -> None:
    """Click the hub's sign-in button, then sign in on the provider's own page."""
    page.goto(f"{hub.url}/hub/login" + (f"?next={next_path}" if next_path else ""))
    page.get_by_role("button", name=re.compile("^Sign in with")).click()
    page.get_by_label("University ID").fill(name)
    page.get_by_label("Password").fill(password or USERS[name]["password"])
    page.get_by_role("button", name="Sign in").click()


def test_student_signs_in_and_lands_in_their_server_with_their_files(switched, page):
    hub, before = switched
    sso_sign_in(page, hub, "student1")
    page.wait_for_url(re.compile(r"/user/student1/lab"), timeout=SPAWN_TIMEOUT_MS)
    expect(page.locator(".jp-FileBrowser .jp-BreadCrumbs")).to_contain_text("d2l", timeout=120_000)
    screenshot(page, "oidc-student-lab")
    proof = page.request.get(f"{hub.url}/user/student1/api/contents/{PROOF}?content=1&type=file&format=text")
    assert proof.ok, proof.status
    assert proof.json()["content"] == "written while the class signed in with passwords"
    user = hubapi.api(hub.classroom, "/users/student1").json()
    assert hub_user_ids(hub)["student1"] == before["student1"]  # the same hub user: the same uid and home
    assert user["groups"] == ["nbgrader-d2l"] and user["admin"] is False
    with grading.gradebook(hub.classroom, hub.classroom.offerings[0]) as book:
        assert book.find_submission("switch-check", "student1").student_id == "student1"


def test_instructor_lands_with_the_instructor_role(switched, page):
    hub, before = switched
    sso_sign_in(page, hub, "teacher", next_path="/hub/home")
    page.wait_for_url(re.compile(r"/hub/home"))
    expect(page.get_by_text("teacher").first).to_be_visible()
    user = hubapi.api(hub.classroom, "/users/teacher").json()
    assert hub_user_ids(hub)["teacher"] == before["teacher"]
    assert user["groups"] == ["formgrade-d2l"]  # the graders' group: the formgrader in their server
    screenshot(page, "oidc-instructor-home")


def test_someone_outside_the_allowed_groups_gets_a_clear_refusal(switched, page):
    hub, _ = switched
    sso_sign_in(page, hub, "mallory")
    expect(page.get_by_text("mallory is not in a group allowed to use this class's hub")).to_be_visible()
    expect(page.locator("body")).to_contain_text("403")
    screenshot(page, "oidc-refused")
    assert hubapi.api(hub.classroom, "/users/mallory").status_code == 404


def test_wrong_provider_password_never_reaches_the_hub(switched, page):
    hub, _ = switched
    sso_sign_in(page, hub, "student2", password="not-the-password")
    expect(page.get_by_role("alert")).to_contain_text("Wrong university ID or password")
    assert hubapi.api(hub.classroom, "/users/student2").json()["last_activity"] is None


def held_callback(hub, name: str) -> tuple[requests.Session, str]:
    """Sign in at the provider as a browser would, following each redirect by hand, and stop before
    the hub's callback: returns the session (with the hub's state cookie) and that URL (code, state)."""
    session = requests.Session()
    url = f"{hub.url}/hub/oauth_login?next=/hub/home"
    for _ in range(10):
        if "/hub/oauth_callback" in url:
            return session, url
        response = session.get(url, allow_redirects=False, timeout=30)
        if response.status_code == 200 and "/interaction/" in url:  # the provider's form
            login = urljoin(url, re.search(r'action="([^"]+)"', response.text).group(1))
            response = session.post(login, data={"login": name, "password": USERS[name]["password"]},
                                    allow_redirects=False, timeout=30)
        assert response.is_redirect, f"{url}: {response.status_code} {response.text[:300]}"
        url = urljoin(url, response.headers["Location"])
    raise AssertionError("the provider never sent the browser back to the hub")


@pytest.mark.parametrize("tamper, expected", [
    ("expired", "The provider refused this sign-in's code"),
    ("forged code", "The provider refused this sign-in's code"),
    ("forged state", "OAuth state mismatch"),
    ("replayed", "The provider refused this sign-in's code"),
])
def test_expired_forged_or_replayed_codes_are_refused(switched, tamper, expected):
    hub, _ = switched
    session, url = held_callback(hub, "student2")
    if tamper == "expired":
        time.sleep(CODE_TTL + 2)
    elif tamper == "forged code":
        url = re.sub(r"code=[^&]+", "code=" + secrets.token_urlsafe(32), url)
    elif tamper == "forged state":
        url = re.sub(r"state=[^&]+", "state=" + secrets.token_urlsafe(16), url)
    elif tamper == "replayed":  # the code is used once, then presented again with the same state cookie
        state_cookie = session.cookies.get("oauthenticator-state")
        first = session.get(url, allow_redirects=False, timeout=30)
        assert first.status_code == 302 and first.headers["Location"].endswith("/hub/home"), first.text[:300]
        session = requests.Session()
        session.cookies.set("oauthenticator-state", state_cookie)
    response = session.get(url, allow_redirects=False, timeout=30)
    assert response.status_code in (400, 403), (response.status_code, response.headers.get("Location"))
    assert expected in html.unescape(response.content.decode())
    assert "jupyterhub-session-id" not in response.cookies


def test_unreachable_issuer_stops_start_up(tmp_path):
    path = write_classroom(tmp_path, auth=oidc_auth("http://127.0.0.1:9"))
    hub = RunningHub(path)
    state.write_private(state.in_state(hub.classroom, "oidc_client_secret"), "x")
    with pytest.raises(HubError, match=r"auth.oidc.issuer: http://127.0.0.1:9/.well-known/openid-configuration "
                       "does not answer"):
        hub.start()
    result = d2lhub("up", "--config", str(path), check=False)  # `d2lhub up` says it in one line, before any build
    assert result.returncode == 2
    assert result.stderr.startswith("error: auth.oidc.issuer: http://127.0.0.1:9/.well-known/openid-configuration does")


def test_the_client_secret_stays_in_its_private_file(switched):
    hub, _ = switched
    path = state.in_state(hub.classroom, "oidc_client_secret")
    assert path.stat().st_mode & 0o777 == 0o600
    secret = path.read_text().strip()
    assert secret not in hub.path.read_text()
    log = state.log_file(hub.classroom).read_text()
    assert "student1" in log and secret not in log


def test_claims_from_the_checked_id_token(switched):
    """claims_from: id_token (what Azure AD needs): the name and groups come from the ID token, after
    its signature, issuer, audience and expiry are checked against the provider's published keys."""
    hub, _ = switched
    hub.stop()
    data = yaml.safe_load(hub.path.read_text())
    data["auth"]["oidc"]["claims_from"] = "id_token"
    hub.path.write_text(yaml.safe_dump(data))
    hub.start()
    session, url = held_callback(hub, "student2")
    response = session.get(url, allow_redirects=False, timeout=30)
    assert response.status_code == 302 and response.headers["Location"].endswith("/hub/home"), response.text[:300]
    assert "ID token of student2 checked" in state.log_file(hub.classroom).read_text()
    user = hubapi.api(hub.classroom, "/users/student2").json()
    assert user["groups"] == ["nbgrader-d2l"]
