"""Students' uids: allocated once per name, kept with the classroom, never reused.

The registry (`state_dir/uids.json`) maps each user name to the uid their server runs as and
their home volume belongs to. A name keeps its uid for good: across the deletion and
re-creation of the account, a rebuilt hub database and a restore (the file travels in the
state folder). A uid is never handed to another name, even after its student is deleted:
`collect` trusts uids, so a recycled one would let one student's files pass as another's.

The home volumes' labels (`org.d2lhub.uid`, written by the hub when it makes a volume) are the
other durable record: when the file is missing (a lost state folder, a classroom older than the
registry) or lacks a name, the uid on that name's volume is adopted, so nobody's files change
owner. Two names whose volumes claim one uid (possible before the registry): the older volume
keeps it, the other name gets a new uid and its home is put right at its next start.

Writers (the hub's spawn threads, the hub at start, the `d2lhub` commands) hold a file lock
beside the registry and replace the file atomically; readers never see half a file.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import docker

from d2lhub import labels, state
from d2lhub.config import Classroom

_in_process = threading.Lock()  # flock orders processes; this orders the hub's threads first


class IdentityError(Exception):
    """The registry cannot be read as one; nothing was changed. The message names the file."""


class Registry:
    """name -> uid, from `first` up; entries are added, never changed or removed."""

    def __init__(self, path: Path, first: int):
        self.path = path
        self.first = first
        self.lock_path = path.with_name(path.name + ".lock")

    def read(self) -> dict[str, int]:
        return dict(self._load()[1])

    def uid_for(self, name: str, recorded: int | None = None) -> int:
        """`name`'s uid: the one it holds, else `recorded` (its volume's label) when no other name
        holds it, else a new one above every uid ever handed out."""
        known = self._load()[1].get(name)
        if known is not None:  # entries never change: no lock needed to read one
            return known
        return self.adopt([(name, recorded)])[name]

    def adopt(self, recorded: Iterable[tuple[str, int | None]]) -> dict[str, int]:
        """Give each name not yet registered its recorded uid (if free) or a new one, in the order
        given (the first claim on a uid wins); returns the whole registry."""
        with self._locked():
            following, uids = self._load()
            changed = False
            for name, uid in recorded:
                if name in uids:
                    continue
                taken = set(uids.values())
                if uid is None or uid < self.first or uid in taken:
                    uid = max([following, self.first, *(u + 1 for u in taken)])
                uids[name] = uid
                following = max(following, uid + 1)
                changed = True
            if changed:
                payload = {"next": following, "uids": dict(sorted(uids.items()))}
                state.write_private(self.path, json.dumps(payload, indent=1) + "\n")
            return uids

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _in_process:
            descriptor = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                yield
            finally:
                os.close(descriptor)  # releases the lock

    def _load(self) -> tuple[int, dict[str, int]]:
        """(the next uid to hand out, name -> uid); an unreadable file is an error, never an empty
        registry (starting over would hand out uids that files already belong to)."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return self.first, {}
        except (OSError, ValueError) as exc:
            raise IdentityError(f"{self.path}: not a uid registry ({exc}); restore it from a backup") from None
        uids = data.get("uids") if isinstance(data, dict) else None
        following = data.get("next") if isinstance(data, dict) else None
        if not isinstance(uids, dict) or not isinstance(following, int) or isinstance(following, bool):
            raise IdentityError(f"{self.path}: not a uid registry (expected {{\"next\": N, \"uids\": {{name: uid}}}})")
        bad = [name for name, uid in uids.items() if not isinstance(uid, int) or isinstance(uid, bool) or uid <= 0]
        if bad:
            raise IdentityError(f"{self.path}: the uid of {', '.join(sorted(bad))} is not a positive whole number")
        seen: dict[int, str] = {}
        for name, uid in sorted(uids.items()):
            if uid in seen:
                raise IdentityError(f"{self.path}: {seen[uid]} and {name} share uid {uid}; each name needs its own")
            seen[uid] = name
        return following, uids


def registry(classroom: Classroom) -> Registry:
    """The classroom's registry; students' uids start above `uid_base` (the graders' group id)."""
    return Registry(state.uid_registry_file(classroom), classroom.spawner.uid_base + 1)


def label_uid(volume_labels: dict | None) -> int | None:
    """The uid a home volume's label records, or None (no label, or not a number)."""
    value = (volume_labels or {}).get(labels.UID, "")
    return int(value) if value.isdigit() else None


def recorded_uids(client: docker.DockerClient, instance: str) -> list[tuple[str, int | None]]:
    """(name, uid) from every home volume's labels, oldest volume first."""
    found = []
    for volume in client.volumes.list(filters=labels.labelled(instance)):
        volume_labels = volume.attrs.get("Labels") or {}
        if labels.USER in volume_labels:
            found.append((volume.attrs.get("CreatedAt") or "", volume.name, volume_labels[labels.USER], label_uid(volume_labels)))
    return [(user, uid) for _, _, user, uid in sorted(found)]


def seed(classroom: Classroom, client: docker.DockerClient) -> dict[str, int]:
    """Register the uids the home volumes record for names the registry lacks; returns the registry."""
    return registry(classroom).adopt(recorded_uids(client, classroom.spawner.instance))
