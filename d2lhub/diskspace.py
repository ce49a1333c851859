"""Free space in the hub's state folder: refuse up front rather than fail half-way.

SQLite keeps a database consistent when its disk fills (the write fails, the journal rolls it
back), but a hub or a command that dies half-way through a change leaves the classroom
half-changed. So the `d2lhub` commands that write to `hub.state_dir` check the space first and
refuse, naming the folder; the hub does the same before a spawn, and turns SQLite's "database
or disk is full" into a message that names the folder on the page the user sees.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from d2lhub.config import Classroom


class DiskFull(Exception):
    """Too little free space where the classroom keeps its state; nothing was changed."""


def existing(path: Path) -> Path:
    """The path, or its nearest folder that exists (a state folder not made yet)."""
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(existing(path)).free


def megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


def full_message(folder: Path) -> str:
    return (
        f"The hub's state folder {folder} is full (its disk has no space left): the hub cannot save "
        "anything until an admin frees space there. Nothing was lost; try again later."
    )


def check(classroom: Classroom, what: str = "") -> None:
    """Raise DiskFull naming the folder when less than hub.min_free_space is free in state_dir."""
    folder = classroom.hub.state_dir
    free, needed = free_bytes(folder), classroom.hub.min_free_space
    if free < needed:
        doing = f" to {what}" if what else ""
        raise DiskFull(
            f"not enough free space in {folder}{doing}: {megabytes(free)} free, hub.min_free_space is "
            f"{megabytes(needed)}. Free space there (or move hub.state_dir); nothing was changed."
        )

