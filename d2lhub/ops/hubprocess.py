"""Start, stop and ask the running hub: what `make up`, `make down` and `d2lhub status` do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from d2lhub import labels
from d2lhub.config import Classroom
from d2lhub.engine import docker_client
from d2lhub.hubapi import answers, api
from d2lhub.ops import services
from d2lhub.state import CONFIG_ENV, log_file, pid_file

SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the checkout: jupyterhub_config.py and the d2lhub package
HUB_CONFIG_FILE = SOURCE_ROOT / "jupyterhub_config.py"


class HubError(Exception):
    """The hub did not start, or does not answer; the message says where to look."""


def alive(pid: int) -> bool:
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own child that exited: reap it
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def running_pid(classroom: Classroom) -> int | None:
    try:
        pid = int(pid_file(classroom).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if alive(pid) else None


def start(classroom: Classroom, config_file: Path, wait_seconds: int = 90, hub_config: Path = HUB_CONFIG_FILE) -> int:
    """Start the hub in the background (it outlives this command) and wait until it answers."""
    pid = running_pid(classroom)
    if pid and answers(classroom):
        return pid
    if pid is None:  # services of a hub that died (crash, SIGKILL) must not run beside the new hub's
        services.stop_leftovers(classroom)
    state = classroom.hub.state_dir
    state.mkdir(parents=True, exist_ok=True)
    # The hub imports the same d2lhub as this command, not whichever copy is installed.
    python_path = os.pathsep.join(filter(None, [str(SOURCE_ROOT), os.environ.get("PYTHONPATH")]))
    # A crash (SIGSEGV, SIGABRT) leaves the Python stack of every thread in the hub's log.
    env = {**os.environ, CONFIG_ENV: str(config_file.resolve()), "PYTHONPATH": python_path, "PYTHONFAULTHANDLER": "1"}
    with open(log_file(classroom), "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(hub_config)],
            cwd=state,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise HubError(f"the hub exited ({process.returncode}):\n{tail(log_file(classroom))}")
        if answers(classroom):
            return process.pid
        time.sleep(0.5)
    raise HubError(f"the hub did not answer within {wait_seconds}s; see {log_file(classroom)}")


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def stop(classroom: Classroom, wait_seconds: int = 30) -> bool:
    """Stop the hub (its proxy with it) and any service a dead hub left behind; True when a hub ran.
    Student servers are left to `stop_servers`."""
    pid = running_pid(classroom)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait_seconds
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    services.stop_leftovers(classroom)
    return pid is not None


def stop_servers(classroom: Classroom) -> int:
    """Stop this hub's student containers (or Swarm services); their volumes (the students' work) stay."""
    client = docker_client()
    mine = labels.labelled(classroom.spawner.instance)
    if classroom.spawner.kind == "swarm":
        found = client.services.list(filters=mine)
        for service in found:
            service.remove()
        return len(found)
    containers = client.containers.list(filters=mine)
    for container in containers:
        container.stop(timeout=10)
    return len(containers)


@dataclass
class ServerRow:
    user: str
    role: str
    server: str
    container: str
    image: str
    last_activity: str


def status(classroom: Classroom) -> list[ServerRow]:
    response = api(classroom, "/users")
    response.raise_for_status()
    client = docker_client()
    servers = (swarm_servers if classroom.spawner.kind == "swarm" else local_servers)(client, classroom)
    rows = []
    for user in sorted(response.json(), key=lambda u: u["name"]):
        server = (user.get("servers") or {}).get("", {})
        state = "ready" if server.get("ready") else (server.get("pending") or "stopped")
        where, image = servers.get(user["name"], ("-", "-"))
        rows.append(
            ServerRow(
                user=user["name"],
                role="admin" if user.get("admin") else ", ".join(sorted(user.get("groups", []))) or "-",
                server=state,
                container=where,
                image=image,
                last_activity=(user.get("last_activity") or "-")[:19],
            )
        )
    return rows


def local_servers(client, classroom: Classroom) -> dict[str, tuple[str, str]]:
    """user -> (container, image) on this host's engine."""
    found = client.containers.list(filters=labels.labelled(classroom.spawner.instance))
    return {c.labels.get(labels.USER): (c.name, (c.image.tags or [c.image.short_id])[0]) for c in found}


def swarm_servers(client, classroom: Classroom) -> dict[str, tuple[str, str]]:
    """user -> (service@node, image) across the Swarm."""
    hostnames = {node.id: node.attrs["Description"]["Hostname"] for node in client.nodes.list()}
    found = {}
    for service in client.services.list(filters=labels.labelled(classroom.spawner.instance)):
        spec = service.attrs["Spec"]
        if labels.USER not in (spec.get("Labels") or {}):  # the hub's other services (the nodes' packet rules)
            continue
        tasks = service.tasks(filters={"desired-state": "running"})
        node = hostnames.get(tasks[0].get("NodeID"), "?") if tasks else "no node yet"
        image = spec["TaskTemplate"]["ContainerSpec"]["Image"]
        found[(spec.get("Labels") or {}).get(labels.USER)] = (f"{service.name}@{node}", image[:19])
    return found
