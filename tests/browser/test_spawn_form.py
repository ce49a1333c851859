"""The profile picker on the spawn page, walked in Chromium against a real hub with two CPU profiles.

"small" is everyone's; "large" (more memory) only the `big-memory` group's, which student1 is
in and student2 is not. student1 sees the picker, chooses "large" with the keyboard and gets
a container with that profile's label and memory limit; student2 goes straight to the spawn.
A profile the student may not have, or that does not exist, posted by hand or by a tampered
form, comes back on the spawn page with the reason, and no server starts.
"""

from __future__ import annotations

import re
import time

import pytest
from hubclient import Browser
from pages import SPAWN_TIMEOUT_MS, hub_fixtures, screenshot, sign_in
from playwright.sync_api import expect

from d2lhub import labels

pytestmark = [pytest.mark.browser, pytest.mark.integration]

GROUP = "big-memory"
SMALL, LARGE = 1 * 2**30, 3 * 2**30
PROFILES = [
    {"name": "small", "display_name": "Small server", "limits": {"cpu": 1.0, "memory": "1G", "home": "64M"}},
    {"name": "large", "display_name": "Large server", "limits": {"cpu": 1.0, "memory": "3G", "home": "64M"}, "groups": [GROUP]},
]


@pytest.fixture(scope="module")
def profile_hub(tmp_path_factory, docker_client):
    """A hub of its own whose classroom.yaml has the two profiles; student1 is put in the group by an admin."""
    hub_gen = hub_fixtures.launched_hub(tmp_path_factory.mktemp("profiles"), docker_client, profiles=PROFILES)
    running = next(hub_gen)
    try:
        admin = running.browser("boss")
        made = admin.hub_api("POST", f"/groups/{GROUP}", json={"users": ["student1"]})
        assert made.status_code == 201, made.text
        running.admin = admin
        yield running
    finally:
        next(hub_gen, None)


def servers(hub, name: str) -> dict:
    response = hub.admin.hub_api("GET", f"/users/{name}")
    response.raise_for_status()
    return response.json().get("servers") or {}


def stop_server(hub, name: str, timeout: float = 90) -> None:
    """An admin stops `name`'s server (if any) and waits until the hub says it is gone."""
    if not servers(hub, name):
        return
    hub.admin.hub_api("DELETE", f"/users/{name}/server")
    deadline = time.monotonic() + timeout
    while servers(hub, name):
        assert time.monotonic() < deadline, f"{name}'s server did not stop"
        time.sleep(0.5)


def container_of(hub, docker_client, name: str) -> dict:
    instance = hub.classroom.spawner.instance
    found = docker_client.containers.list(filters={"label": [f"{labels.INSTANCE}={instance}", f"{labels.USER}={name}"]})
    assert len(found) == 1, f"{name} has {len(found)} server containers"
    return found[0].attrs


def documents(page) -> list[tuple[str, int]]:
    """Every page the browser loads (URL, status), redirects included, in order."""
    seen: list[tuple[str, int]] = []
    page.on("response", lambda r: seen.append((r.url, r.status)) if r.request.resource_type == "document" else None)
    return seen


def test_student_in_the_group_picks_the_large_server_with_the_keyboard(profile_hub, docker_client, page):
    hub = profile_hub
    stop_server(hub, "student1")
    sign_in(page, hub, "student1")
    page.wait_for_url(re.compile(r"/hub/spawn(/student1)?(\?.*)?$"))

    picker = page.get_by_role("group", name="Choose your server")  # the fieldset, named by its legend
    expect(picker).to_be_visible()
    small = picker.get_by_role("radio", name="Small server")  # the <label for> names each radio
    large = picker.get_by_role("radio", name="Large server")
    expect(picker.get_by_role("radio")).to_have_count(2)
    expect(small).to_be_checked()
    expect(large).not_to_be_checked()
    expect(picker).to_contain_text("1 CPU, 1 GB memory")
    expect(picker).to_contain_text("1 CPU, 3 GB memory")
    expect(page.locator("select")).to_have_count(0)  # not DockerSpawner's image picker

    small.focus()
    page.keyboard.press("ArrowDown")  # the radio group's own keys move the choice
    expect(large).to_be_checked()
    expect(large).to_be_focused()
    expect(small).not_to_be_checked()
    page.keyboard.press("ArrowUp")
    expect(small).to_be_checked()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Space")  # Space keeps the focused radio chosen
    expect(large).to_be_checked()
    screenshot(page, "profile-picker")

    page.keyboard.press("Tab")  # on to the Start button
    expect(page.get_by_role("button", name="Start")).to_be_focused()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/user/student1/lab"), timeout=SPAWN_TIMEOUT_MS)

    container = container_of(hub, docker_client, "student1")
    assert container["Config"]["Labels"][labels.PROFILE] == "large"
    assert container["HostConfig"]["Memory"] == LARGE
    stop_server(hub, "student1")


def test_student_outside_the_group_goes_straight_to_the_spawn(profile_hub, docker_client, page):
    hub = profile_hub
    stop_server(hub, "student2")
    loaded = documents(page)
    sign_in(page, hub, "student2")
    page.wait_for_url(re.compile(r"/user/student2/lab"), timeout=SPAWN_TIMEOUT_MS)

    spawn_pages = [(url, status) for url, status in loaded if re.search(r"/hub/spawn(/student2)?(\?|$)", url)]
    assert spawn_pages, f"the sign-in never went through the spawn page: {loaded}"
    assert all(status in (302, 303) for _, status in spawn_pages), f"a spawn form was shown: {spawn_pages}"
    assert any("/hub/spawn-pending/student2" in url for url, _ in loaded), loaded

    container = container_of(hub, docker_client, "student2")
    assert container["Config"]["Labels"][labels.PROFILE] == "small"
    assert container["HostConfig"]["Memory"] == SMALL
    stop_server(hub, "student2")


def test_a_tampered_form_with_an_unknown_profile_is_refused_on_the_page(profile_hub, page):
    hub = profile_hub
    stop_server(hub, "student1")
    sign_in(page, hub, "student1")
    page.wait_for_url(re.compile(r"/hub/spawn(/student1)?(\?.*)?$"))
    large = page.get_by_role("radio", name="Large server")
    large.check()
    large.evaluate("radio => { radio.value = 'nope'; }")  # what a hand-edited form would post
    page.get_by_role("button", name="Start").click()

    error = page.locator(".spawn-error-msg")
    expect(error).to_contain_text("There is no server type 'nope' in this classroom (offered to student1: small, large)")
    expect(page.get_by_role("radio")).to_have_count(2)  # the form is back, to choose again
    screenshot(page, "profile-refused")
    assert re.search(r"/hub/spawn", page.url), page.url
    assert not servers(hub, "student1"), "a server started for a refused profile"


@pytest.mark.parametrize(
    ("posted", "refusal"),
    [
        ("large", "The server type 'large' is not offered to student2 (offered: small)."),
        ("nope", "There is no server type 'nope' in this classroom (offered to student2: small)."),
    ],
)
def test_a_profile_posted_by_hand_is_refused(profile_hub, posted, refusal):
    """A student outside the group posts the spawn form with requests, cookies and _xsrf, as a script would."""
    hub = profile_hub
    stop_server(hub, "student2")
    student = Browser(hub.url)
    assert student.login("student2", "student2-pass").status_code == 302
    home = student.session.get(student.url("/hub/home"), timeout=30)  # a page that never spawns; renews _xsrf
    home.raise_for_status()
    xsrf = student.xsrf("/hub/")
    assert xsrf, "no _xsrf cookie for /hub/"
    response = student.session.post(
        student.url("/hub/spawn"),
        files={"profile": (None, posted), "_xsrf": (None, xsrf)},  # multipart, as the form posts it
        allow_redirects=False,
        timeout=60,
    )
    assert response.status_code == 200, f"{response.status_code}: {response.headers.get('location')}"
    assert "spawn-error-msg" in response.text
    assert refusal.replace("'", "&#39;") in response.text or refusal in response.text, response.text[-2000:]
    time.sleep(1)
    assert not servers(hub, "student2"), "a server started for a refused profile"
