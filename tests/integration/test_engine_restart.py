"""The Docker engine restarted under a running hub: the hub recovers with no manual step.

This test stops the machine's one Docker engine, so every other container on it stops too.
It runs last in the suite (tests/conftest.py). On an engine shared with other people's
work, leave it out with D2LHUB_KEEP_ENGINE=1, and run it alone, holding the engine lock:

    flock -x /tmp/d2lhub-engine.lock .venv/bin/python -m pytest tests/integration/test_engine_restart.py

The engine is started again the way the product starts one (`bootstrap.ensure_engine`), in a
`finally`, and the test returns only once it answers.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from pathlib import Path

import pytest
import requests
from harness import launched_hub

from d2lhub import engine
from d2lhub.hub import firewall
from d2lhub.hub.facts import firewall_inputs
from d2lhub.hub.spawner import ENGINE_DOWN_MESSAGE
from d2lhub.ops import bootstrap

pytestmark = [
    pytest.mark.integration,
    pytest.mark.restarts_engine,
    pytest.mark.skipif(
        os.environ.get("D2LHUB_KEEP_ENGINE") == "1",
        reason="D2LHUB_KEEP_ENGINE=1: this engine is shared, and this test restarts it",
    ),
]
DOCKERD_PID_FILE = Path("/var/run/docker.pid")  # dockerd's default --pidfile
ENGINE_LOG_DIR = Path(tempfile.gettempdir()) / "d2lhub-engine"


def dockerd_pid() -> int:
    pid = int(DOCKERD_PID_FILE.read_text().strip())
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd", f"{DOCKERD_PID_FILE} names no dockerd"
    return pid


def stop_engine(wait_seconds: int = 90) -> None:
    pid = dockerd_pid()
    os.kill(pid, signal.SIGTERM)  # dockerd stops its containers, then exits
    deadline = time.monotonic() + wait_seconds
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not Path(f"/proc/{pid}").exists(), "dockerd did not stop"
    assert not engine.engine_answers()


def start_engine() -> None:
    """The way `make up` does it; returns once the engine answers."""
    bootstrap.ensure_engine(ENGINE_LOG_DIR, say=lambda message: print(f"d2lhub: {message}"))
    assert engine.engine_answers()


def server(browser) -> dict:
    return (browser.hub_api("GET", f"/users/{browser.name}").json().get("servers") or {}).get("", {})


def spawn_failure(browser, timeout: float = 60) -> tuple[str, float]:
    """Ask for a server as the spawn page does; return the progress stream's failure and the seconds it took."""
    started = time.monotonic()
    browser.session.get(browser.url("/hub/spawn"), timeout=30)
    with browser.session.get(
        browser.url(f"/hub/api/users/{browser.name}/server/progress"), stream=True, timeout=timeout
    ) as stream:
        for line in stream.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                event = json.loads(line[5:])
                if event.get("failed") or event.get("ready"):
                    return event.get("message", ""), time.monotonic() - started
    raise AssertionError("the progress stream ended without an outcome")


def our_containers(docker_client, hub, name: str) -> list:
    wanted = f"{hub.classroom.spawner.instance}-{name}"
    return [c for c in docker_client.containers.list(all=True) if c.name == wanted]


def test_engine_restart_hub_recovers_and_students_start_again(tmp_path, docker_client):
    hubs = launched_hub(tmp_path / "engine", docker_client)
    hub = next(hubs)
    try:
        health = f"{hub.url}/hub/health"
        student, other = hub.browser("student1"), hub.browser("student2")
        student.spawn()
        student.open_server()
        student.write_file("before-restart.txt", "written before the engine went down")
        instance = hub.classroom.spawner.instance
        rules = firewall_inputs(hub.classroom, docker_client.networks.get(instance).id)  # as the hub applies them
        assert firewall.in_place(**rules)

        stop_engine()
        try:
            assert requests.get(health, timeout=10).status_code == 200
            message, seconds = spawn_failure(other)
            assert ENGINE_DOWN_MESSAGE in message, message
            assert seconds < 30, f"a spawn during the outage took {seconds:.0f}s to fail"
            time.sleep(35)  # at least one poll of student1's server during the outage (poll_interval 30 s)
            assert requests.get(health, timeout=10).status_code == 200
            assert student.hub_api("GET", "/users/student1").status_code == 200
        finally:
            start_engine()
        print("firewall rules survived the engine restart:", firewall.in_place(**rules))
        firewall.remove(instance)  # as if the restarted engine had flushed its chains: the hub must put them back
        # The engine stopped the container (no live-restore); the hub notices at its next poll.
        deadline = time.monotonic() + 120
        while server(student) and time.monotonic() < deadline:
            time.sleep(2)
        assert not server(student), "the hub did not notice the server the engine stopped"
        assert requests.get(health, timeout=10).status_code == 200

        student.spawn()
        assert student.open_server().status_code == 200
        assert student.read_file("before-restart.txt") == "written before the engine went down"
        other.spawn()
        assert other.open_server().status_code == 200
        for name in ("student1", "student2"):
            mine = our_containers(docker_client, hub, name)
            assert len(mine) == 1 and mine[0].status == "running", [(c.name, c.status) for c in mine]
        assert firewall.in_place(**rules), firewall.current(instance)
    finally:
        if not engine.engine_answers():
            start_engine()
        hubs.close()
