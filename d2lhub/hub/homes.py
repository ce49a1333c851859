"""Students' home volumes: made once, labelled with whose they are, and owned by the student's uid.

The uid comes from the classroom's registry (d2lhub.identity); a volume made before the
registry knew its student records its uid on its label, which the registry adopts. A home
that belongs to another uid than its student's (made by an older hub, or two volumes that
claimed one uid) is given to the student by a throwaway root container before their server
starts: every file changes owner, none is deleted. If that fails the spawn is refused with
the volume's name and the command that fixes it, never a server dying on `cd`.

`collect` checks submissions' owners against the registry's uids: Docker labels are the
hub's word, not the student's, so the label is written here, by the hub, at creation.
"""

from __future__ import annotations

import os
from pathlib import Path

import docker.errors

from d2lhub import engine, identity, labels
from d2lhub.config import Classroom
from d2lhub.studentimage import HOME, STUDENT_GID

MARKER = ".d2lhub"  # keeps a new volume non-empty (see `prepare`)


class HomeRefused(RuntimeError):
    """A home volume belongs to another uid and could not be made its student's; says how to fix it."""

    def __init__(self, message: str):
        super().__init__(message)
        self.jupyterhub_message = message  # also on the page a student reloads after the failed spawn


def inspect(client, volume: str) -> dict | None:
    """The volume's description, or None when there is none (`client` is docker-py's APIClient)."""
    try:
        return client.inspect_volume(volume)
    except docker.errors.NotFound:
        return None


def student_uid(client, classroom: Classroom, volume: str, user: str) -> int:
    """`user`'s uid from the registry, adopting the one their existing volume records if it is free."""
    found = inspect(client, volume)
    return identity.registry(classroom).uid_for(user, identity.label_uid((found or {}).get("Labels")))


def prepare(client, classroom: Classroom, volume: str, user: str, uid: int, image: str) -> str:
    """Create `volume` owned by `uid`, or make an existing one `uid`'s; says what it did ('' for nothing).

    The marker folder keeps the volume non-empty: Docker copies the image's (root-owned)
    folder over an empty volume at every mount, which would undo the ownership.
    """
    found = inspect(client, volume)
    if found is None:
        driver, options = engine.volume_driver(classroom, volume)
        created = client.create_volume(
            volume,
            driver=driver,
            driver_opts=options or None,
            labels={labels.INSTANCE: classroom.spawner.instance, labels.USER: user, labels.UID: str(uid)},
        )
        if options or not own_on_host(Path(created.get("Mountpoint") or "/nonexistent"), uid):
            own_in_container(classroom, volume, uid, image)
        return "Created your home volume"
    owner = owner_on_host(Path(found.get("Mountpoint") or "/nonexistent"))
    recorded = owner if owner is not None else identity.label_uid(found.get("Labels"))
    if recorded == uid:
        return ""
    was = f"uid {recorded}" if recorded is not None else "no recorded uid"
    try:
        own_in_container(classroom, volume, uid, image)
    except Exception as error:
        raise HomeRefused(
            f"Your home volume {volume} belongs to {was}, not to your uid {uid}, and could not be "
            f"made yours ({error}). Your files are untouched. The course admin fixes it on the hub's host with: "
            f"docker run --rm --user 0 --network none -v {volume}:{HOME} --entrypoint chown {image} "
            f"-R {uid}:{STUDENT_GID} {HOME}"
        ) from error
    return f"Your home volume belonged to {was}: its files are yours (uid {uid}) again, nothing deleted"


def owner_on_host(mountpoint: Path) -> int | None:
    """The owner of a local volume's files, when this process can see them (root, local engine)."""
    if os.geteuid() != 0 or not mountpoint.is_dir():
        return None
    return mountpoint.stat().st_uid


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
    """A throwaway root container makes the home the student's: every file in it (links themselves,
    never their targets), the home folder last, so a home owned right was put right in full.
    Skipped inside when the home folder already belongs to `uid` (a label older than a fix)."""
    owner = f"{uid}:{STUDENT_GID}"
    script = (
        f'[ "$(stat -c %u:%g {HOME})" = "{owner}" ] && [ -d {HOME}/{MARKER} ] && exit 0; '
        f"mkdir -p {HOME}/{MARKER} && find {HOME} -mindepth 1 -exec chown -h {owner} {{}} + "
        f"&& chown {owner} {HOME} && chmod 700 {HOME}"
    )
    client = engine.docker_client(timeout=600)
    container = client.containers.create(
        image,
        entrypoint=["/bin/sh", "-c"],
        command=[script],
        volumes={volume: {"bind": HOME, "mode": "rw"}},
        **engine.throwaway(classroom.spawner.instance, "home-owner", cap_add=["CHOWN", "FOWNER", "DAC_OVERRIDE", "DAC_READ_SEARCH"]),
    )
    try:
        container.start()
        if container.wait(timeout=600).get("StatusCode") != 0:
            raise RuntimeError(f"preparing {volume} failed: {container.logs().decode().strip()[-300:]}")
    finally:
        container.remove(force=True)
