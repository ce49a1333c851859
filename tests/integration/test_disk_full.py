"""The hub's state folder on a full disk: clear errors naming the folder, no corrupt database,
and everything back once space is freed.

The state folder lies on a small tmpfs mounted for the test (root only), filled with one file.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import requests
from harness import ACCOUNTS, launched_hub
from hubclient import Browser
from test_cli import d2lhub

from d2lhub import hubapi
from d2lhub.grading import layout
from d2lhub.grading import workflow as grading

pytestmark = pytest.mark.integration
ROSTER = "username,first name,last name,email,role\n{name},New,Comer,,student\n"


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path, leave: int = 0) -> Path:
    """One file that takes every free byte, or all but about `leave` bytes; returns it."""
    filler = folder / "filler"
    if leave:
        with open(filler, "wb") as out:
            out.truncate(0)
            out.write(b"\0" * max(0, os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize - leave))
        return filler
    with open(filler, "ab", buffering=0) as out:
        for chunk in (2**20, 4096, 1):
            try:
                while True:
                    out.write(b"\0" * chunk)
            except OSError as error:
                assert error.errno == errno.ENOSPC, error
    return filler


def spawn_failure(browser) -> str:
    """Ask for a server as the spawn page does; the progress stream's last message."""
    browser.session.get(browser.url("/hub/spawn"), timeout=60)
    events = browser.session.get(browser.url(f"/hub/api/users/{browser.name}/server/progress"), timeout=60)
    return [line for line in events.text.splitlines() if line.startswith("data:")][-1]


def integrity(database: Path) -> str:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def roster_file(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.csv"
    path.write_text(ROSTER.format(name=name))
    return path


def test_full_state_disk_gives_clear_errors_keeps_databases_and_recovers(tmp_path, small_disk, docker_client):
    state = small_disk / "state"
    # Homes without a limit: a homes file system (256M) would not fit in this 64M state disk, and is refused.
    hubs = launched_hub(tmp_path / "full", docker_client, hub={"state_dir": str(state), "min_free_space": "16M"},
                        limits={"home": None})
    hub = next(hubs)
    config = str(hub.path)
    databases = [state / "jupyterhub.sqlite", layout.course_root(hub.classroom) / "gradebook.db"]
    filler = None
    try:
        d2lhub("roster", "import", str(roster_file(tmp_path, "early")), "--config", config)
        student = hub.browser("student1")
        student.spawn()
        student.open_server()
        student.write_file("kept.txt", "written before the disk filled")
        student.stop()

        # Below hub.min_free_space (16M) but not yet full: a spawn is refused before it writes.
        filler = fill(small_disk, leave=8 * 2**20)
        refused = spawn_failure(student)
        assert f"{state} is full" in refused, refused
        filler = fill(small_disk)
        assert requests.get(f"{hub.url}/hub/health", timeout=10).status_code == 200

        # The commands that write the state folder refuse up front, naming it.
        for args in (("roster", "import", str(roster_file(tmp_path, "late"))),
                     ("assignment", "release", "ex01-tensors-autograd"),
                     ("up",)):
            result = d2lhub(*args, "--config", config, check=False)
            assert result.returncode == 2, (args, result.stdout, result.stderr)
            assert f"not enough free space in {state}" in " ".join(result.stderr.split()), (args, result.stderr)

        # The hub: signing in and starting a server fail with a page naming the full folder.
        started = time.monotonic()
        signed_in = Browser(hub.url).login("student2", ACCOUNTS["student2"])
        assert signed_in.status_code == 500 and f"{state} is full" in signed_in.text, signed_in.text[-2000:]
        spawn = student.session.get(student.url("/hub/spawn"), timeout=60)
        if spawn.url.split("?")[0].endswith("/hub/login"):  # the hub could not note the visit: signed out
            spawn = student.login("student1", ACCOUNTS["student1"])
        assert spawn.status_code == 500, spawn.status_code
        assert f"{state} is full" in spawn.text, spawn.text[spawn.text.find("<main"):][:1500]
        assert time.monotonic() - started < 60
        assert not (student.hub_api("GET", "/users/student1").json().get("servers") or {})
        assert requests.get(f"{hub.url}/hub/health", timeout=10).status_code == 200
        for database in databases:
            assert integrity(database) == "ok", database

        filler.unlink()
        filler = None
        # Space is back: everything works again and nothing was lost.
        assert Browser(hub.url).login("student2", ACCOUNTS["student2"]).status_code == 302
        student.spawn()
        student.open_server()
        assert student.read_file("kept.txt") == "written before the disk filled"
        d2lhub("roster", "import", str(roster_file(tmp_path, "late")), "--config", config)
        users = {u["name"] for u in hubapi.api(hub.classroom, "/users").json()}
        assert {"early", "late", "student1", "student2"} <= users
        with grading.gradebook(hub.classroom, hub.classroom.offerings[0]) as book:
            assert {"early", "late"} <= {s.id for s in book.students}
        student.stop()
        for database in databases:
            assert integrity(database) == "ok", database
    finally:
        if filler is not None:
            filler.unlink(missing_ok=True)
        hubs.close()
        log = state / "jupyterhub.log"
        if log.exists():  # the tmpfs goes with the test: keep the hub's log for a reader of a failure
            (tmp_path / "jupyterhub.log").write_bytes(log.read_bytes())
