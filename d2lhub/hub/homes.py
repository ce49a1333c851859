"""Students' home volumes: made once, labelled with whose they are, and owned by the student's uid.

`collect` checks submissions' owners against the uid on the volume's label: Docker labels are
the hub's word, not the student's, so the label is written here, by the hub, at creation.
"""

from __future__ import annotations

import os
from pathlib import Path

import docker.errors

from d2lhub import engine, labels
from d2lhub.config import Classroom
from d2lhub.studentimage import HOME, STUDENT_GID

MARKER = ".d2lhub"  # keeps a new volume non-empty (see `prepare`)


def prepare(client, classroom: Classroom, volume: str, user: str, uid: int, image: str) -> bool:
    """Create `volume` owned by `uid` unless it exists; True when it was new.

    The marker folder keeps the volume non-empty: Docker copies the image's (root-owned)
    folder over an empty volume at every mount, which would undo the ownership.
    `client` is docker-py's low-level APIClient, as DockerSpawner holds it.
    """
    try:
        client.inspect_volume(volume)
        return False
    except docker.errors.NotFound:
        pass
    _, options = engine.volume_driver(classroom, volume)
    created = engine.make_volume(
        client, classroom, volume,
        {labels.INSTANCE: classroom.spawner.instance, labels.USER: user, labels.UID: str(uid)},
    )
    if options or not own_on_host(Path(created.get("Mountpoint") or "/nonexistent"), uid):
        own_in_container(classroom, volume, uid, image)
    return True


def own_on_host(mountpoint: Path, uid: int) -> bool:
    """Fast path when the engine is local and we are root: no extra container per new student."""
    if os.geteuid() != 0 or not mountpoint.is_dir():
        return False
    marker = mountpoint / MARKER
    marker.mkdir(exist_ok=True)
    for path in (mountpoint, marker):
        os.chown(path, uid, STUDENT_GID)
    mountpoint.chmod(0o700)
    return True


def own_in_container(classroom: Classroom, volume: str, uid: int, image: str) -> None:
    """For volumes on another driver or engine: a throwaway root container makes the home the student's."""
    client = engine.docker_client(timeout=60)
    container = client.containers.create(
        image,
        entrypoint=["/bin/sh", "-c"],
        command=[f"mkdir -p {HOME}/{MARKER} && chown -R {uid}:{STUDENT_GID} {HOME} && chmod 700 {HOME}"],
        volumes={volume: {"bind": HOME, "mode": "rw"}},
        **engine.throwaway(classroom.spawner.instance, "home-owner", cap_add=["CHOWN", "FOWNER"]),
    )
    try:
        container.start()
        if container.wait(timeout=60).get("StatusCode") != 0:
            raise RuntimeError(f"preparing {volume} failed: {container.logs().decode()[-300:]}")
    finally:
        container.remove(force=True)
