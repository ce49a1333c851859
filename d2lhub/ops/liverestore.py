"""The engine's `live-restore` setting, as the classroom's kind needs it (`make up`, through the bootstrap).

With live-restore on, a Docker engine that stops (an upgrade, a crash) leaves its containers
running and takes them back when it starts again, so a single-machine hub's students keep their
servers and their kernels' variables. Docker refuses it together with Swarm mode: `docker swarm
init` fails while it is on, and an engine that is in a Swarm does not even start with it. So a
`spawner.kind: docker` hub turns it on, unless the engine is in a Swarm (then it says so and
leaves it off), and a `swarm` hub turns it off.

It is set in the engine's daemon.json and reloaded with SIGHUP, not given as a dockerd flag:
the reload changes a running engine without stopping anyone's server, and every later start of
the engine (by systemd, by the bootstrap's plain `dockerd`, after a reboot) reads it again.
Only an engine on this machine can be changed so; another one is left as it is, with a message.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker

from d2lhub.engine import EngineError

DAEMON_JSON = Path("/etc/docker/daemon.json")  # dockerd's default --config-file
PID_FILE = Path("/var/run/docker.pid")  # dockerd's default --pidfile
KEY = "live-restore"


class LiveRestoreError(EngineError):
    """The engine's configuration cannot be read or changed; the message names the file."""


@dataclass(frozen=True)
class Dockerd:
    """The engine's daemon on this machine: its process and the configuration file it reads."""

    pid: int
    config_file: Path
    flag: bool  # started with --live-restore: its daemon.json cannot say otherwise


def flag_value(args: list[str], flag: str) -> str | None:
    """`--flag VALUE` or `--flag=VALUE` in a command line."""
    for index, arg in enumerate(args):
        if arg == flag and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(f"{flag}="):
            return arg.split("=", 1)[1]
    return None


def local_dockerd(pid_file: Path = PID_FILE) -> Dockerd | None:
    """The dockerd whose pid file this machine has, or None (an engine elsewhere, or none running)."""
    try:
        pid = int(pid_file.read_text().strip())
        if Path(f"/proc/{pid}/comm").read_text().strip() != "dockerd":
            return None
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except (OSError, ValueError):
        return None
    config_file = Path(flag_value(args, "--config-file") or DAEMON_JSON)
    return Dockerd(pid, config_file, "--live-restore" in args or any(a.startswith("--live-restore=") for a in args))


def plan(kind: str, swarm_state: str, running: bool, kept: bool | None) -> tuple[bool | None, str]:
    """What to set live-restore to (None: leave it) for this classroom kind and engine, and why.

    `running`: the engine has it on now; `kept`: its next start will too (daemon.json or the flag say so;
    None for an engine elsewhere, whose files are not ours to read)."""
    if kind == "swarm":
        if running or kept:
            return False, "live-restore off: Docker does not combine it with Swarm mode"
        return None, ""
    if running and kept is not False:
        return None, ""
    if swarm_state != "inactive":
        return None, (f"the engine is in Swarm mode ({swarm_state}), which Docker does not combine with live-restore: "
                      "left off, so an engine restart stops every student's server (they start again with their "
                      "files). `docker swarm leave` on a single-machine hub and run `make up` again to keep servers "
                      "running through engine restarts")
    return True, "live-restore on: students' servers keep running through an engine restart"


def read_config(path: Path) -> dict:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    try:
        settings = json.loads(text) if text.strip() else {}
    except ValueError as error:
        raise LiveRestoreError(f"{path} is not valid JSON ({error}): fix it, then run `make up` again") from None
    if not isinstance(settings, dict):
        raise LiveRestoreError(f"{path} holds no JSON object: fix it, then run `make up` again")
    return settings


def write_setting(path: Path, value: bool) -> None:
    """Set live-restore in a daemon.json, keeping its other settings (written whole, then renamed)."""
    settings = read_config(path)
    settings[KEY] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.d2lhub")
    staged.write_text(json.dumps(settings, indent=2) + "\n")
    staged.chmod(path.stat().st_mode & 0o777 if path.exists() else 0o644)
    staged.replace(path)


def reload(client: docker.DockerClient, daemon: Dockerd, value: bool, wait_seconds: float = 10) -> None:
    """SIGHUP the engine (as `systemctl reload docker` does) and wait until it reports `value`."""
    os.kill(daemon.pid, signal.SIGHUP)
    deadline = time.monotonic() + wait_seconds
    while client.info()["LiveRestoreEnabled"] != value:
        if time.monotonic() > deadline:
            raise LiveRestoreError(f"dockerd did not take {KEY}: {str(value).lower()} from {daemon.config_file} "
                                   "on reload: see its log")
        time.sleep(0.2)


def set_live_restore(client: docker.DockerClient, daemon: Dockerd, value: bool) -> None:
    write_setting(daemon.config_file, value)
    reload(client, daemon, value)


def ensure(client: docker.DockerClient, kind: str, say: Callable[[str], None]) -> None:
    """live-restore as a classroom of `kind` (`spawner.kind`) needs it, said in one line when it changes or
    cannot; `make cluster` asks for a Swarm's (off) before it makes one."""
    info = client.info()
    daemon = local_dockerd()
    kept = None if daemon is None else daemon.flag or read_config(daemon.config_file).get(KEY) is True
    value, why = plan(kind, info["Swarm"]["LocalNodeState"], info["LiveRestoreEnabled"], kept)
    if value is None:
        if why:
            say(why)
        return
    if daemon is None:
        say(f"the Docker engine is not on this machine: set \"{KEY}\": {str(value).lower()} in its daemon.json "
            f"and reload it ({why})")
        return
    if daemon.flag:
        say(f"dockerd runs with --live-restore, which its daemon.json cannot turn off: remove the flag ({why})")
        return
    set_live_restore(client, daemon, value)
    say(f"{why} (set in {daemon.config_file}, engine reloaded)")

