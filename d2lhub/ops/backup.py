"""`d2lhub backup` / `restore`: the whole classroom in one archive and back, onto a fresh hub.

What a classroom is: the state folder (hub database, secrets, accounts, GPU assignments,
gradebook and course folder) and every Docker volume labelled with the hub's instance
(students' homes, the exchange, the data cache). SQLite databases are copied with SQLite's
backup API so a running hub still gives a consistent copy. Volumes travel as tar streams
read and written by a throwaway container, so the engine may be remote.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import docker

from d2lhub import engine, labels
from d2lhub import state as state_names
from d2lhub.config import Classroom
from d2lhub.studentimage import student_image

MANIFEST = "d2lhub-backup.json"
SKIPPED = {"jupyterhub.pid", "proxy.pid", "jupyterhub.log", "dockerd.log", "uids.json.lock"}
Progress = Callable[[str], None]


class BackupError(Exception):
    """The archive is not a d2lhub backup, or the target is not empty; nothing was changed."""


def labelled_volumes(client: docker.DockerClient, instance: str) -> list[str]:
    found = client.volumes.list(filters=labels.labelled(instance))
    # the registry's blobs are the images again: `d2lhub up` pushes them anew
    return sorted(v.name for v in found if (v.attrs.get("Labels") or {}).get(labels.ROLE) != "registry")


def sqlite_copy(source: Path, target: Path) -> None:
    with sqlite3.connect(source) as live, sqlite3.connect(target) as copy:
        live.backup(copy)


def volume_tar(client: docker.DockerClient, image: str, instance: str, volume: str) -> bytes:
    """The volume's files as a tar stream (members under `v/`, owners and modes kept); nothing runs."""
    container = client.containers.create(
        image, command=["true"], volumes={volume: {"bind": "/v", "mode": "ro"}},
        **engine.throwaway(instance, "backup"),
    )
    try:
        stream, _ = container.get_archive("/v")
        return b"".join(stream)
    finally:
        container.remove(force=True)


def write_volume(client: docker.DockerClient, image: str, instance: str, volume: str, data: bytes, volume_labels: dict) -> None:
    client.volumes.create(volume, labels=volume_labels)
    container = client.containers.create(
        image, entrypoint=["tar", "-C", "/", "--same-owner", "-xpf", "/in/volume.tar"],
        volumes={volume: {"bind": "/v", "mode": "rw"}},
        # tar restores every file's owner and mode, into folders of other uids
        **engine.throwaway(instance, "restore", cap_add=["CHOWN", "DAC_OVERRIDE", "FOWNER"]),
    )
    try:
        container.put_archive("/", _single_file_tar("in/volume.tar", data))
        container.start()
        if container.wait()["StatusCode"] != 0:
            raise BackupError(f"writing volume {volume} failed: {container.logs().decode()[-300:]}")
    finally:
        container.remove(force=True)


def _single_file_tar(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def backup(classroom: Classroom, archive_path: Path, say: Progress = lambda _: None) -> dict:
    client = engine.docker_client()
    image = student_image(classroom, client)
    state = classroom.hub.state_dir
    instance = classroom.spawner.instance
    volumes = labelled_volumes(client, instance)
    partial = archive_path.with_name(archive_path.name + ".partial")
    # The archive holds the cookie secret, the tokens and initial passwords: its owner's eyes only.
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "wb") as private, tarfile.open(fileobj=private, mode="w:gz") as archive, \
            tempfile.TemporaryDirectory() as scratch:
        homes = (state_names.homes_dir(classroom), state_names.homes_image(classroom))  # homes travel as volumes
        for path in sorted(state.rglob("*")):
            if not path.is_file() or path.name in SKIPPED or path.name.endswith((".partial", "-journal")):
                continue
            if any(path == folder or folder in path.parents for folder in homes):
                continue
            name = f"state/{path.relative_to(state)}"
            if path.suffix in {".sqlite", ".db"}:
                copy = Path(scratch) / path.name
                sqlite_copy(path, copy)
                archive.add(copy, name)
            else:
                archive.add(path, name)
        for volume in volumes:
            say(f"volume {volume}")
            data = volume_tar(client, image, instance, volume)
            info = tarfile.TarInfo(f"volumes/{volume.removeprefix(instance)}.tar")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        manifest = {
            "instance": instance,
            "volumes": [v.removeprefix(instance) for v in volumes],
            "labels": {v.removeprefix(instance): client.volumes.get(v).attrs.get("Labels") or {} for v in volumes},
        }
        info = tarfile.TarInfo(MANIFEST)
        payload = json.dumps(manifest, indent=1).encode()
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    partial.replace(archive_path)
    return manifest


def restore(classroom: Classroom, archive_path: Path, say: Progress = lambda _: None) -> dict:
    """Into an empty classroom only: a restore never merges into, or overwrites, live data."""
    client = engine.docker_client()
    image = student_image(classroom, client)
    state = classroom.hub.state_dir
    instance = classroom.spawner.instance
    try:
        archive = tarfile.open(archive_path, "r:gz")
    except (OSError, tarfile.TarError) as exc:
        raise BackupError(f"{archive_path}: not a d2lhub backup ({exc})") from None
    with archive:
        try:
            manifest = json.loads(archive.extractfile(MANIFEST).read())
        except (KeyError, ValueError):
            raise BackupError(f"{archive_path}: not a d2lhub backup (no {MANIFEST})") from None
        if (state / "jupyterhub.sqlite").exists():
            raise BackupError(f"{state} already holds a hub database; restore needs an empty state_dir")
        clashes = [instance + suffix for suffix in manifest["volumes"] if instance + suffix in labelled_volumes(client, instance)]
        if clashes:
            raise BackupError(f"volumes already exist: {', '.join(clashes)}; restore needs a fresh instance")
        state.mkdir(parents=True, exist_ok=True)
        members = [m for m in archive.getmembers() if m.name.startswith("state/")]
        archive.extractall(state, members=_strip(members, "state/"), filter="data")
        for suffix in manifest["volumes"]:
            say(f"volume {instance}{suffix}")
            data = archive.extractfile(f"volumes/{suffix}.tar").read()
            volume_labels = {**manifest["labels"].get(suffix, {}), labels.INSTANCE: instance}
            write_volume(client, image, instance, instance + suffix, data, volume_labels)
    return manifest


def _strip(members: list[tarfile.TarInfo], prefix: str) -> list[tarfile.TarInfo]:
    for member in members:
        member.name = member.name.removeprefix(prefix)
    return members
