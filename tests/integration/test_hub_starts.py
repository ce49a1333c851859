"""The hub starts again and again without crashing, half the time after students' servers
stopped while it was down (issue 16: `make up` once ended in `the hub exited (-11)`).

The crash: DockerSpawner makes its Docker client lazily, in whichever thread asks first. With
the classroom's pool of several Docker threads, the first calls of a hub start (a look at each
server, two when one stopped while the hub was down) could each make a client; storing the
second freed the first while a third thread was reading it, because CPython hands out a class
attribute's old value while that value is being finalized (python/cpython#118492). The fix,
one client made under a lock, is in d2lhub.hub.spawner (`ClassroomMixin.client`).

The hub runs with PYTHONFAULTHANDLER, so a crash leaves every thread's stack in its log; a start
fails here if the hub exits, if its log says `Fatal Python error`, if it does not answer, or if
it does not see the servers that stopped as stopped (and the one that kept running as running).

Each start costs a hub start (3-8 s here), and half of them two spawns: the suite runs
D2LHUB_HUB_STARTS starts (8 unless set); `make hub-starts` runs 50.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from harness import launched_hub

from d2lhub import labels
from d2lhub.ops import hubprocess
from d2lhub.state import log_file

pytestmark = pytest.mark.integration
STARTS = int(os.environ.get("D2LHUB_HUB_STARTS", "8"))
STOPPED_WHILE_DOWN = ("student1", "student2")
KEPT_RUNNING = "teacher"


@pytest.fixture()
def quiet_hub(tmp_path, docker_client):
    """A hub with no process of its own beside the proxy (no culler, no egress proxy): each start is as cheap as one gets."""
    yield from launched_hub(tmp_path / "classroom", docker_client, network={"egress": "open"})


def stop_hub(hub, kill: bool) -> None:
    """A crash (SIGKILL) or `make down` (SIGTERM); the students' servers keep running either way."""
    if not kill:
        hub.stop()
        return
    pid = hubprocess.running_pid(hub.classroom)
    os.kill(pid, signal.SIGKILL)
    while hubprocess.alive(pid):
        time.sleep(0.05)


def stop_container(docker_client, hub, name: str) -> None:
    found = docker_client.containers.list(
        filters={"label": [f"{labels.INSTANCE}={hub.classroom.spawner.instance}", f"{labels.USER}={name}"]})
    assert len(found) == 1, f"{name} should have one running server: {[c.name for c in found]}"
    found[0].stop(timeout=2)


def server_state(browser) -> str:
    server = (browser.hub_api("GET", f"/users/{browser.name}").json().get("servers") or {}).get("")
    return "stopped" if server is None else "ready" if server.get("ready") else "pending"


def test_the_hub_starts_again_and_again_without_a_crash(quiet_hub, docker_client):
    hub = quiet_hub
    browsers = {name: hub.browser(name) for name in (*STOPPED_WHILE_DOWN, KEPT_RUNNING)}
    for browser in browsers.values():
        browser.spawn()
    seconds = []
    for start in range(STARTS):
        stop_hub(hub, kill=start % 2 == 0)
        servers_stopped = start % 4 in (1, 2)  # half the starts, after a SIGTERM and after a SIGKILL alike
        if servers_stopped:
            for name in STOPPED_WHILE_DOWN:
                stop_container(docker_client, hub, name)
        log_from = log_file(hub.classroom).stat().st_size
        began = time.monotonic()
        hub.start()  # what `make up` does; HubError (with the log's tail) if the hub exits
        seconds.append(time.monotonic() - began)
        with open(log_file(hub.classroom), "rb") as log:
            log.seek(log_from)
            text = log.read().decode(errors="replace")
        assert "Fatal Python error" not in text, f"start {start + 1}:\n{text}"
        for name in STOPPED_WHILE_DOWN:
            assert server_state(browsers[name]) == ("stopped" if servers_stopped else "ready"), f"start {start + 1}: {name}"
            assert (f"{name} appears to have stopped while the Hub was down" in text) == servers_stopped
        assert server_state(browsers[KEPT_RUNNING]) == "ready", f"start {start + 1}"
        if servers_stopped:
            for name in STOPPED_WHILE_DOWN:
                browsers[name].spawn()
    print(f"\n{STARTS} hub starts: {sum(seconds):.0f} s starting, {min(seconds):.1f}-{max(seconds):.1f} s each")
