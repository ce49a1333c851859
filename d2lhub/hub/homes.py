"""Students' home volumes: made once, labelled with whose they are, and owned by the student's uid.

`collect` checks submissions' owners against the uid on the volume's label: Docker labels are
the hub's word, not the student's, so the label is written here, by the hub, at creation.

With a home limit (`limits.home`) a home is a btrfs subvolume of the homes file system
(d2lhub.homefs), limited by its qgroup and bound into the server as a `local` volume
(`type: none, o: bind`); a home made before limits were on is moved there (`migrate`).
"""

from __future__ import annotations

import os
from pathlib import Path

import docker.errors

from d2lhub import engine, homefs, labels
from d2lhub.config import Classroom
from d2lhub.grading import layout
from d2lhub.homefs import MARKER
from d2lhub.studentimage import HOME, STUDENT_GID


def prepare(client, classroom: Classroom, volume: str, user: str, uid: int, image: str, limit: int | None = None) -> bool:
    """Create `volume` owned by `uid` unless it exists; True when it was new. On the homes file
    system, (re)apply the home's limit, so a changed profile or `d2lhub quota` holds at this start.

    The marker folder keeps the volume non-empty: Docker copies the image's (root-owned)
    folder over an empty volume at every mount, which would undo the ownership.
    `client` is docker-py's low-level APIClient, as DockerSpawner holds it.
    """
    volume_labels = {labels.INSTANCE: classroom.spawner.instance, labels.USER: user, labels.UID: str(uid)}
    if homefs.enabled(classroom):
        path = homefs.home_path(classroom, volume)
        new = homefs.make_home(path, uid)
        homefs.set_limit(path, limit)
        try:
            found = client.inspect_volume(volume)
        except docker.errors.NotFound:
            client.create_volume(volume, driver="local", driver_opts=bind_options(path), labels=volume_labels)
            return new
        if not bound_to(found, path):
            raise RuntimeError(f"The home volume {volume} is not on the homes file system yet: "
                               "the course admin runs `make up` (it moves old homes there).")
        return new
    try:
        client.inspect_volume(volume)
        return False
    except docker.errors.NotFound:
        pass
    driver, options = engine.volume_driver(classroom, volume)
    created = client.create_volume(volume, driver=driver, driver_opts=options or None, labels=volume_labels)
    if options or not own_on_host(Path(created.get("Mountpoint") or "/nonexistent"), uid):
        own_in_container(classroom, volume, uid, image)
    return True


def bind_options(path: Path) -> dict[str, str]:
    return {"type": "none", "o": "bind", "device": str(path)}


def bound_to(volume: dict, path: Path) -> bool:
    return (volume.get("Options") or {}).get("device") == str(path)


def ensure_filesystem(client, classroom: Classroom, say=lambda _: None) -> None:
    """The homes file system mounted with quotas, the submissions' subvolume in place, old homes moved in."""
    if homefs.ensure(classroom, layout.inbound_dir(classroom), say) is not None:
        for volume in migrate(client, classroom):
            say(f"moved {volume} onto the homes file system")


def migrate(client, classroom: Classroom) -> list[str]:
    """Move homes made without a limit (plain Docker volumes, a restored backup) onto the homes file
    system, keeping their name, labels, owners and files. `client` is docker-py's DockerClient."""
    moved = []
    for volume in client.volumes.list(filters=labels.labelled(classroom.spawner.instance)):
        attrs = volume.attrs
        if labels.USER not in (attrs.get("Labels") or {}):
            continue
        path = homefs.home_path(classroom, volume.name)
        if bound_to(attrs, path):
            continue
        users = client.containers.list(all=True, filters={"volume": volume.name})
        if users:
            raise homefs.QuotaError(f"home volume {volume.name} is used by container {users[0].name}: stop the "
                                    "servers (`make down`), then run `make up` again to move it onto the homes file system")
        source = Path(attrs.get("Mountpoint") or "/nonexistent")
        if attrs.get("Driver") != "local" or not source.is_dir():
            raise homefs.QuotaError(f"home volume {volume.name} is not a local volume on this host: copy its files "
                                    "by hand, or set limits.home: null")
        partial = path.with_name(path.name + ".partial")
        if partial.exists():
            homefs.run("btrfs", "subvolume", "delete", str(partial))
        homefs.subvolume(partial)
        homefs.run("cp", "-a", f"{source}/.", str(partial))
        volume.remove()
        os.rename(partial, path)
        client.volumes.create(volume.name, driver="local", driver_opts=bind_options(path), labels=attrs["Labels"])
        moved.append(volume.name)
    return moved


def own_on_host(mountpoint: Path, uid: int) -> bool:
    """Fast path when the engine is local and we are root: no extra container per new student."""
    if os.geteuid() != 0 or not mountpoint.is_dir():
        return False
    homefs.claim(mountpoint, uid)
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
