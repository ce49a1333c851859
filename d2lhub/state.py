"""The names of what a classroom keeps in its state folder (`hub.state_dir`), and how secrets are written.

Imported by the CLI, the hub and the services alike, so it loads nothing heavy: only the
standard library and the validated classroom.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from d2lhub.config import Classroom

CONFIG_ENV = "D2LHUB_CONFIG"  # the hub process and its services read classroom.yaml from here
CLI_SERVICE = "d2lhub-cli"  # the hub service whose token the `d2lhub` commands use
PASSWORDS_FILE = "accounts.json"  # generated passwords of the accounts classroom.yaml lists
ROSTER_HASHES_FILE = "roster_accounts.json"  # bcrypt hashes `roster import` wrote, read at sign-in


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV, "classroom.yaml"))


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, atomically: created 0600, never readable at the umask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # a leftover partial from an older run keeps its own mode otherwise
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())  # the new content is on disk before the name points at it
    partial.replace(path)


def persistent_secret(path: Path) -> str:
    """A random token made once and kept, so restarts keep the proxy and services connected."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        token = secrets.token_hex(32)
        write_private(path, token)
        return token


def in_state(classroom: Classroom, name: str) -> Path:
    """A file or folder in the classroom's state folder (`hub.state_dir`)."""
    return classroom.hub.state_dir / name


def _state_path(name: str, doc: str) -> Callable[[Classroom], Path]:
    def path(classroom: Classroom) -> Path:
        return in_state(classroom, name)

    path.__doc__ = doc
    return path


# What the state folder holds, by name.
course_dir = _state_path("course", "The built course, mounted read-only into every server (one course on the hub).")
courses_dir = _state_path("courses", "The built courses, a folder each named by its id (several courses on the hub).")
pid_file = _state_path("jupyterhub.pid", "The running hub's process id.")
log_file = _state_path("jupyterhub.log", "The hub's log (and its services').")
cookie_secret_file = _state_path("jupyterhub_cookie_secret", "The key the hub signs its cookies with.")
proxy_pid_file = _state_path("proxy.pid", "The running proxy's process id.")
gpu_state_file = _state_path("gpus.json", "GPU assignments, kept across hub restarts.")
services_dir = _state_path("services", "Records of the hub's service processes (d2lhub.hub.servicerun).")
homes_dir = _state_path("homes", "The btrfs file system of students' homes (a subvolume each) and the submissions.")
homes_image = _state_path("homes.btrfs", "The sparse file holding that file system, unless the host mounts one.")
quotas_file = _state_path("quotas.json", "Home limits set by `d2lhub quota`, by user, over limits.home.")
uid_registry_file = _state_path("uids.json", "Each user name's uid, handed out once and never reused (d2lhub.identity).")


def built_course(classroom: Classroom, course_id: str) -> Path:
    """Where `course build` puts a course's chapters: the one course's folder, or its own among several."""
    return courses_dir(classroom) / course_id if len(classroom.all_courses) > 1 else course_dir(classroom)


def cli_token(classroom: Classroom) -> str:
    return persistent_secret(in_state(classroom, "cli_token"))


def proxy_token(classroom: Classroom) -> str:
    return persistent_secret(in_state(classroom, "proxy_token"))


def db_url(classroom: Classroom) -> str:
    return classroom.hub.db_url or f"sqlite:///{in_state(classroom, 'jupyterhub.sqlite')}"


def hub_api_port(classroom: Classroom) -> int:
    """Where student servers reach the hub (on the bridge's gateway); the public port stays on 127.0.0.1."""
    return classroom.hub.port + 81


def egress_proxy_port(classroom: Classroom) -> int:
    """Where students' servers reach the egress proxy (network.egress: allowlist), beside the hub's API."""
    return classroom.hub.port + 82


def proxy_api_url(classroom: Classroom) -> str:
    return f"http://127.0.0.1:{classroom.hub.port + 1}"


def public_url(classroom: Classroom) -> str:
    scheme = "https" if classroom.hub.https else "http"
    return f"{scheme}://{classroom.hub.ip}:{classroom.hub.port}"


def account_passwords(classroom: Classroom) -> dict[str, str]:
    """The password of each listed account: as configured, else generated once and kept in state_dir."""
    path = in_state(classroom, PASSWORDS_FILE)
    try:
        stored: dict[str, str] = json.loads(path.read_text())
    except FileNotFoundError:
        stored = {}
    passwords = {}
    for account in classroom.auth.accounts:
        passwords[account.name] = account.password or stored.get(account.name) or secrets.token_urlsafe(9)
    if passwords != stored:
        write_private(path, json.dumps(passwords, indent=1, sort_keys=True))
    return passwords
