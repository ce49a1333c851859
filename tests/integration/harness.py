"""What the integration tests, the browser tests and the benchmark share: a real hub of their own,
named and labelled per run and cleaned up by label."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import docker.errors
import yaml

from d2lhub import config, labels
from d2lhub.course.build import build_course
from d2lhub.grading import layout
from d2lhub.hub import egress, firewall
from d2lhub.ops import hubprocess
from d2lhub.state import course_dir, public_url

REPO = Path(__file__).resolve().parents[2]
TEST_PREFIX = "d2ltest-"
ACCOUNTS = {
    "student1": "student1-pass",
    "student2": "student2-pass",
    "teacher": "teacher-pass-1",
    "boss": "boss-pass-123",
}
ROLES = {"student1": "student", "student2": "student", "teacher": "instructor", "boss": "admin"}



def free_port_block() -> int:
    """A port p with p, p+1 (proxy API), p+81 (hub API) and p+82 (egress proxy) all free."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + 82 > 65535:
            continue
        try:
            for offset in (1, 81, 82):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port + offset))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port block")


def created_before(attrs: dict, cutoff: datetime) -> bool:
    stamp = attrs.get("Created") or attrs.get("CreatedAt") or ""
    try:
        return datetime.fromisoformat(stamp[:19].replace("T", " ")).replace(tzinfo=timezone.utc) < cutoff
    except ValueError:
        return False


def remove_labelled(client, instance_filter, cutoff: datetime | None = None, busy: list[str] | None = None) -> None:
    """Remove containers, volumes and networks whose instance label matches (and, given a cutoff, are older).

    Given `busy`, a volume the engine refuses with "volume has active mounts" is listed there and kept, and
    the rest goes on (Docker 20.10 miscounts the mounts of a live-restored container's volumes, moby#44422)."""
    def wanted(object_labels: dict, attrs: dict) -> bool:
        return instance_filter((object_labels or {}).get(labels.INSTANCE, "")) and (
            cutoff is None or created_before(attrs, cutoff)
        )

    try:  # Swarm services first (their tasks' containers and networks go with them)
        services = client.services.list(filters={"label": labels.INSTANCE})
    except docker.errors.APIError:  # not a Swarm manager: there are none
        services = []
    for service in services:
        if wanted(service.attrs["Spec"].get("Labels"), service.attrs):
            service.remove()
    # ignore_removed: other runs on this engine remove their own containers meanwhile
    for container in client.containers.list(all=True, filters={"label": labels.INSTANCE}, ignore_removed=True):
        if wanted(container.labels, container.attrs):
            try:
                container.remove(force=True)
            except docker.errors.NotFound:  # a removed service's task container, gone meanwhile
                pass
    for volume in client.volumes.list(filters={"label": labels.INSTANCE}):
        if wanted(volume.attrs.get("Labels"), volume.attrs):
            try:
                volume.remove(force=True)
            except docker.errors.APIError as error:
                if busy is None or "volume has active mounts" not in str(error):
                    raise
                busy.append(volume.name)
    for network in client.networks.list(filters={"label": labels.INSTANCE}):
        if wanted(network.attrs.get("Labels"), network.attrs):
            for attempt in range(20):  # a removed service's task may still hold a Swarm network a moment
                try:
                    network.remove()
                    break
                except docker.errors.APIError:
                    if attempt == 19:
                        raise
                    time.sleep(0.5)
            firewall.remove(network.attrs["Labels"][labels.INSTANCE])
            shutil.rmtree(egress.RUN_ROOT / network.attrs["Labels"][labels.INSTANCE], ignore_errors=True)


def place_collected(classroom, student: str, assignment: str, notebook_text: str) -> Path:
    """A submission where `collect` leaves one in the course folder (as nbgrader submit made it)."""

    folder = layout.course_root(classroom) / "submitted" / student / assignment
    folder.mkdir(parents=True)
    (folder / f"{assignment}.ipynb").write_text(notebook_text)
    (folder / "timestamp.txt").write_text("2025-01-01 00:00:00.000000 UTC")
    (folder / "submission_secret.txt").write_text(uuid.uuid4().hex)
    return folder


def write_classroom(folder: Path, **overrides) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    instance = f"{TEST_PREFIX}{uuid.uuid4().hex[:8]}"
    data = {
        "course": {"id": "d2l", "name": "D2L test course", "term": "Test term", "help_url": "http://127.0.0.1/help",
                   "source": str(REPO / "course"),
                   "assignments": str(REPO / "assignments")},
        "auth": {"accounts": [{"name": n, "role": ROLES[n], "password": p} for n, p in ACCOUNTS.items()]},
        "images": {"student": {"name": "d2lhub/student", "context": str(REPO / "images/student")}},
        # Homes on a small btrfs of their own (made at hub start, in a sparse file under state/).
        "hub": {"port": free_port_block(), "state_dir": str(folder / "state"), "homes_size": "256M"},
        "limits": {"cpu": 1.0, "memory": "2G", "home": "64M"},
        "grading": {"inbound_size": "32M", "max_submission": "8M"},
        "culling": {"enabled": False},
        "spawner": {"instance": instance},
    }
    for key, value in overrides.items():
        if value is None:  # a key left out (`course` where the test gives `courses`)
            data.pop(key, None)
        elif isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    path = folder / "classroom.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class RunningHub:
    def __init__(self, path: Path):
        self.path = path
        self.classroom = config.load(path)
        self.url = public_url(self.classroom)

    def start(self) -> None:
        hubprocess.start(self.classroom, self.path)

    def stop(self) -> None:
        hubprocess.stop(self.classroom)

    def browser(self, name: str):
        from hubclient import Browser

        browser = Browser(self.url)
        response = browser.login(name, ACCOUNTS[name])
        assert response.status_code == 302, f"sign-in of {name} failed: {response.status_code}"
        return browser


def roster_student(hub: RunningHub, folder: Path, name: str):
    """One more student, through `d2lhub roster import` as an instructor adds one, signed in."""
    from hubclient import Browser
    from test_cli import d2lhub

    roster = folder / f"{name}.csv"
    roster.write_text(f"username,first name,last name,email,role\n{name},New,Student,,student\n")
    d2lhub("roster", "import", str(roster), "--config", str(hub.path))
    rows = (hub.classroom.hub.state_dir / "roster-passwords.csv").read_text().splitlines()
    password = next(line.split(",", 1)[1] for line in rows if line.startswith(f"{name},"))
    browser = Browser(hub.url)
    assert browser.login(name, password).status_code == 302, f"sign-in of {name} failed"
    return browser


def launched_hub(folder: Path, docker_client, prepare=None, **overrides):
    """A hub of its own, started now (after prepare(classroom), given one: what an older hub left in its state
    folder); yields it, then stops it and removes all it made."""
    running = RunningHub(write_classroom(folder, **overrides))
    build_course(running.classroom.course.source, course_dir(running.classroom))
    if prepare is not None:
        prepare(running.classroom)
    running.start()
    try:
        yield running
    finally:
        running.stop()
        remove_hub_objects(docker_client, running.classroom)


def remove_hub_objects(docker_client, classroom) -> None:
    """Remove what a test's hub made. Docker 20.10 loses count of the volume mounts of a container that
    ran through a live-restored engine restart (moby#44422, fixed in 23.0: the restart test runs last, under
    the session's hubs too) and refuses to remove such a volume until the engine starts again: its record
    is left for then (the suite's sweep of old test objects takes it), its bind and everything else go now."""
    busy: list[str] = []
    remove_labelled(docker_client, lambda value: value == classroom.spawner.instance, busy=busy)
    for name in busy:  # the engine's bind of the home goes now (the homes file system is freed); the record waits
        subprocess.run(["umount", docker_client.volumes.get(name).attrs["Mountpoint"]], check=False)
    unmount_under(classroom.hub.state_dir)
    if busy:
        print(f"d2lhub: the engine keeps {', '.join(busy)} until it starts again (moby#44422)")


def unmount_under(folder: Path) -> None:
    """Unmount what a test's hub mounted under `folder` (the homes file system, the submissions' bind),
    deepest first; a loop-mounted file system's loop device goes with it."""
    folder = str(Path(folder).resolve())
    points = {line.split(" ")[4].replace("\\040", " ") for line in Path("/proc/self/mountinfo").read_text().splitlines()}
    for point in sorted((p for p in points if p == folder or p.startswith(folder + "/")), key=len, reverse=True):
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], check=False)


def server_uid(docker_client, classroom, name: str) -> int:
    """The uid the student's running server runs as (its container's user)."""
    instance = classroom.spawner.instance
    found = docker_client.containers.list(filters={"label": [f"{labels.INSTANCE}={instance}", f"{labels.USER}={name}"]})
    assert len(found) == 1, f"expected one running server of {name}, found {[c.name for c in found]}"
    return int(found[0].attrs["Config"]["User"].split(":")[0])


def roster_password(classroom, name: str) -> str:
    """The password `roster import` generated for `name`."""
    rows = (classroom.hub.state_dir / "roster-passwords.csv").read_text().splitlines()
    return next(line.split(",", 1)[1] for line in reversed(rows) if line.startswith(f"{name},"))


def leave_proof(hub, docker_client, names, text: str) -> dict[str, int]:
    """Each student in turn signs in, starts their server, writes `proof.txt` (`text` with their name
    in it) and stops; returns the uid each server ran as."""
    uids = {}
    for name in names:
        browser = hub.browser(name)
        browser.spawn()
        browser.open_server()
        browser.write_file("proof.txt", text.format(name=name))
        uids[name] = server_uid(docker_client, hub.classroom, name)
        browser.stop()
    return uids


def running_servers(browsers: dict, at_once: int):
    """Start each signed-in browser's server (`at_once` at a time, as a class arriving) and open it; yields
    them by name, then stops them (a module fixture's body)."""
    with ThreadPoolExecutor(at_once) as pool:
        list(pool.map(lambda b: b.spawn(timeout=300), browsers.values()))
    for browser in browsers.values():
        browser.open_server()
    yield browsers
    for browser in browsers.values():
        browser.stop()
