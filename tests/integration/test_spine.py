"""The spine: sign in through the form, a container spawns, ~/d2l holds the chapters, MXNet runs,
work survives restarts, and students are kept apart."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration

GRADIENT = """
from mxnet import autograd, np, npx
npx.set_np()
x = np.arange(4.0)
x.attach_grad()
with autograd.record():
    y = 2 * np.dot(x, x)
y.backward()
print(float(y), x.grad.tolist(), (np.ones((2, 3)) @ np.ones((3, 2))).tolist())
"""

IDENTITY = """
import os, json
print(json.dumps({"uid": os.getuid(), "docker_sock": os.path.exists("/var/run/docker.sock"),
                  "home": os.path.expanduser("~")}))
"""


@pytest.fixture(scope="module")
def student1(hub):
    browser = hub.browser("student1")
    browser.spawn()
    assert browser.open_server().status_code == 200
    return browser


def container_of(docker_client, hub, name):
    instance = hub.classroom.spawner.instance
    found = docker_client.containers.list(filters={"label": [f"org.d2lhub.instance={instance}", f"org.d2lhub.user={name}"]})
    assert len(found) == 1, f"expected one running container for {name}, found {[c.name for c in found]}"
    return found[0]


def test_wrong_password_is_refused(hub):
    from hubclient import Browser

    response = Browser(hub.url).login("student1", "not-the-password")
    assert response.status_code != 302


def test_chapters_are_in_home(student1):
    names = student1.list_dir("d2l")
    assert "index.ipynb" in names
    assert {"chapter_preliminaries", "chapter_linear-networks"} <= set(names)
    assert "autograd.ipynb" in student1.list_dir("d2l/chapter_preliminaries")


def test_mxnet_runs_with_autograd(student1):
    result = student1.execute(GRADIENT)
    assert result.error is None, result.error
    assert float(result.stdout.split()[0]) == 28.0  # 2 * (0 + 1 + 4 + 9)
    assert "[0.0, 4.0, 8.0, 12.0]" in result.stdout  # d/dx 2 x.x = 4x
    assert "[[3.0, 3.0], [3.0, 3.0]]" in result.stdout


def test_container_is_not_root_and_has_no_docker_socket(student1, hub, docker_client):
    result = student1.execute(IDENTITY)
    assert result.error is None, result.error
    facts = json.loads(result.stdout)
    assert facts["uid"] != 0
    assert facts["uid"] >= hub.classroom.spawner.uid_base
    assert facts["docker_sock"] is False
    container = container_of(docker_client, hub, "student1")
    assert container.attrs["Config"]["User"].split(":")[0] == str(facts["uid"])
    assert container.attrs["HostConfig"]["CapDrop"] == ["ALL"]
    assert not any("docker.sock" in (m.get("Source") or "") for m in container.attrs["Mounts"])


def test_other_students_cookies_get_no_access(hub, student1):
    student2 = hub.browser("student2")
    response = student2.open_server(owner="student1")
    assert response.status_code == 403
    listing = student2.server_api("GET", "/contents/d2l", owner="student1")
    assert listing.status_code in {302, 403}
    assert "chapter_preliminaries" not in listing.text


def test_work_survives_server_restart(student1):
    student1.write_file("notes.txt", "my gradient notes")
    student1.stop()
    student1.spawn()
    assert student1.open_server().status_code == 200
    assert student1.read_file("notes.txt") == "my gradient notes"


def test_hub_restart_leaves_server_running(hub, student1, docker_client):
    before = container_of(docker_client, hub, "student1").id
    hub.stop()
    hub.start()
    assert container_of(docker_client, hub, "student1").id == before
    assert student1.open_server().status_code == 200
    assert student1.execute("print(6 * 7)").stdout.strip() == "42"


def test_assignments_tab_answers_though_nbgrader_loads_on_first_use(student1):
    """nbgrader's student extensions are loaded lazily (d2lhub/lazy_nbgrader.py); the tab must not notice."""
    for _ in range(2):  # the first call loads nbgrader, the second goes straight to it
        response = student1.session.get(
            student1.url("/user/student1/nbgrader_version?version=0.9.6"),
            headers={"X-XSRFToken": student1.session.cookies.get("_xsrf", path="/user/student1/") or ""},
            timeout=60,
        )
        assert response.status_code == 200
        assert response.json()["success"] is True
