"""The Docker engine restarted under a running single-machine hub: students' servers and kernels run on,
the packet rules are back within seconds of the engine's return, and nobody takes a manual step.

This test stops the machine's one Docker engine. It turns live-restore on as `make up` does, so
other containers on the engine run on too, and puts the engine's configuration back as it found
it at the end (daemon.json and the running setting), so Swarm tests can follow in any order. It
runs last in the suite (tests/conftest.py). On an engine shared with other people's work, leave
it out with D2LHUB_KEEP_ENGINE=1, and run it alone, holding the engine lock, with the engine in
no Swarm (`docker info --format '{{.Swarm.LocalNodeState}}'` says inactive):

    flock -x /tmp/d2lhub-engine.lock .venv/bin/python -m pytest tests/integration/test_engine_restart.py

The engine is started again the way the product starts one (`bootstrap.ensure_engine`), in a
`finally`, and the test returns only once it answers.
"""

from __future__ import annotations

import html
import json
import os
import signal
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from harness import launched_hub

from d2lhub import engine
from d2lhub.hub import firewall
from d2lhub.hub.facts import firewall_inputs
from d2lhub.hub.spawner import ENGINE_DOWN_MESSAGE
from d2lhub.ops import bootstrap, liverestore

pytestmark = [
    pytest.mark.integration,
    pytest.mark.restarts_engine,
    pytest.mark.skipif(
        os.environ.get("D2LHUB_KEEP_ENGINE") == "1",
        reason="D2LHUB_KEEP_ENGINE=1: this engine is shared, and this test restarts it",
    ),
]
DOCKERD_PID_FILE = liverestore.PID_FILE
ENGINE_LOG_DIR = Path(tempfile.gettempdir()) / "d2lhub-engine"
RULES_WITHIN = 5  # seconds from the engine's return to the packet rules standing again


def dockerd_pid() -> int:
    pid = int(DOCKERD_PID_FILE.read_text().strip())
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd", f"{DOCKERD_PID_FILE} names no dockerd"
    return pid


def stop_engine(wait_seconds: int = 90) -> None:
    pid = dockerd_pid()
    os.kill(pid, signal.SIGTERM)  # with live-restore on, dockerd leaves its containers running and exits
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
    """Ask for a server as the spawn page does; return what the student is told and the seconds it took: the
    spawn page itself when the spawn failed within its first second, else the progress stream's failure."""
    started = time.monotonic()
    page = browser.session.get(browser.url("/hub/spawn"), timeout=30)
    if page.status_code >= 500:
        return html.unescape(page.text), time.monotonic() - started
    with browser.session.get(
        browser.url(f"/hub/api/users/{browser.name}/server/progress"), stream=True, timeout=timeout
    ) as stream:
        for line in stream.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                event = json.loads(line[5:])
                if event.get("failed") or event.get("ready"):
                    return event.get("message", ""), time.monotonic() - started
    pending = browser.session.get(browser.url(f"/hub/spawn-pending/{browser.name}"), timeout=30)  # it ended at once
    if pending.status_code >= 500:
        return html.unescape(pending.text), time.monotonic() - started
    raise AssertionError(f"no outcome in the progress stream nor on the pending page ({pending.status_code})")


def our_containers(docker_client, hub, name: str) -> list:
    wanted = f"{hub.classroom.spawner.instance}-{name}"
    return [c for c in docker_client.containers.list(all=True) if c.name == wanted]


def engine_configuration(docker_client) -> tuple[liverestore.Dockerd, str | None, bool]:
    """The engine's daemon, its daemon.json as it is (None: no file) and its running live-restore."""
    daemon = liverestore.local_dockerd()
    assert daemon is not None and not daemon.flag, "this test needs the local dockerd, without --live-restore"
    text = daemon.config_file.read_text() if daemon.config_file.exists() else None
    return daemon, text, docker_client.info()["LiveRestoreEnabled"]


def put_back(found: tuple[liverestore.Dockerd, str | None, bool]) -> None:
    """The running setting by reload (a key taken out of daemon.json keeps its value), then the file's own text."""
    _, text, enabled = found
    if not engine.engine_answers():
        start_engine()
    client, daemon = engine.docker_client(), liverestore.local_dockerd()
    liverestore.set_live_restore(client, daemon, enabled)
    if text is None:
        daemon.config_file.unlink()
    else:
        daemon.config_file.write_text(text)
    assert client.info()["LiveRestoreEnabled"] == enabled


def time_return(rules: dict, seconds: float = 120) -> tuple[float, float]:
    """Seconds until the engine answers, then from that moment until this hub's rules all stand."""
    started, answered = time.monotonic(), None
    while time.monotonic() - started < seconds:
        if answered is None and engine.engine_answers():
            answered = time.monotonic()
        if answered is not None and firewall.in_place(**rules):
            return answered - started, time.monotonic() - answered
        time.sleep(0.1)
    raise AssertionError(f"within {seconds:.0f}s: engine answered {answered is not None}, rules {firewall.current(rules['instance'])}")


def test_engine_restart_keeps_servers_kernels_and_rules(tmp_path, docker_client):
    found = engine_configuration(docker_client)
    hubs = launched_hub(tmp_path / "engine", docker_client)
    hub = next(hubs)
    try:
        said = []
        bootstrap.ensure_all(hub.classroom, say=said.append)  # what `make up` does
        assert docker_client.info()["LiveRestoreEnabled"], said
        assert liverestore.read_config(found[0].config_file)[liverestore.KEY] is True  # the next start keeps it on
        health = f"{hub.url}/hub/health"
        student, other = hub.browser("student1"), hub.browser("student2")
        student.spawn()
        student.open_server()
        student.write_file("before-restart.txt", "written before the engine went down")
        kernel = student.open_notebook("engine-restart.ipynb")
        assert student.execute("answer = 6 * 7", shutdown=False, kernel_id=kernel).error is None
        (container,) = our_containers(docker_client, hub, "student1")
        process = Path(f"/proc/{container.attrs['State']['Pid']}")
        instance = hub.classroom.spawner.instance
        rules = firewall_inputs(hub.classroom, docker_client.networks.get(instance).id)  # as the hub applies them
        assert firewall.in_place(**rules)

        stop_engine()
        try:
            assert process.exists(), "the student's server stopped with the engine"
            assert requests.get(health, timeout=10).status_code == 200
            message, seconds = spawn_failure(other)
            assert ENGINE_DOWN_MESSAGE in message, message
            assert seconds < 30, f"a spawn during the outage took {seconds:.0f}s to fail"
            firewall.remove(instance)  # as if the engine's restart (a firewall reload with it) had flushed them
            time.sleep(35)  # at least one poll of student1's server during the outage (poll_interval 30 s)
            assert requests.get(health, timeout=10).status_code == 200
            assert process.exists()
        finally:
            with ThreadPoolExecutor(1) as pool:
                returned = pool.submit(time_return, rules)
                start_engine()
                until_answer, until_rules = returned.result()
        print(f"engine answered {until_answer:.1f}s after its start; rules stood {until_rules:.2f}s later")
        assert until_rules < RULES_WITHIN, f"the rules came back {until_rules:.1f}s after the engine"

        assert server(student).get("ready"), "the hub let go of the server that ran through the restart"
        container.reload()
        assert container.status == "running" and process.exists()
        assert student.execute("print(answer)", shutdown=False, kernel_id=kernel).stdout.strip() == "42"
        assert student.read_file("before-restart.txt") == "written before the engine went down"
        student.stop()  # a server that ran through the restart stops and starts again with its home
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
        try:
            if not engine.engine_answers():
                start_engine()
            hubs.close()  # harness.remove_hub_objects: what Docker 20.10 cannot remove yet waits for its next start
        finally:
            put_back(found)


