"""Students' home volumes: made once, labelled with whose they are, and owned by the student's uid.

The uid comes from the classroom's registry (d2lhub.identity); a volume made before the
registry knew its student records its uid on its label, which the registry adopts. A home
that belongs to another uid than its student's (made by an older hub, or two volumes that
claimed one uid) is given to the student by a throwaway root container before their server
starts: every file changes owner, none is deleted. If that fails the spawn is refused with
the volume's name and the command that fixes it, never a server dying on `cd`.

`collect` checks submissions' owners against the registry's uids: Docker labels are the
hub's word, not the student's, so the label is written here, by the hub, at creation.

With a home limit (`limits.home`) a home is a btrfs subvolume of the homes file system
(d2lhub.homefs), limited by its qgroup and bound into the server as a `local` volume
(`type: none, o: bind`); a home made before limits were on is moved there (`migrate`).
"""

from __future__ import annotations

import os
from pathlib import Path

import docker
import docker.errors

from d2lhub import engine, homefs, identity, labels
from d2lhub.config import Classroom
from d2lhub.grading import layout
from d2lhub.homefs import MARKER
from d2lhub.studentimage import HOME, STUDENT_GID


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


def prepare(client, classroom: Classroom, volume: str, user: str, uid: int, image: str,
            limit: int | None = None, node: docker.DockerClient | None = None) -> str:
    """Create `volume` owned by `uid`, or make an existing one `uid`'s; says what it did ('' for nothing).

    `node`: the engine of the Swarm node that holds the home (`spawner.homes: node`, d2lhub.hub.nodehomes),
    whose APIClient `client` then is: a plain volume there, its files never seen from this host.
    The marker folder keeps the volume non-empty: Docker copies the image's (root-owned)
    folder over an empty volume at every mount, which would undo the ownership.
    """
    found = inspect(client, volume)
    owned = {labels.INSTANCE: classroom.spawner.instance, labels.USER: user, labels.UID: str(uid)}
    if node is not None:
        if found is None:
            client.create_volume(volume, driver="local", labels=owned)
            own_in_container(classroom, volume, uid, image, node)
            return "Created your home volume"
        if identity.label_uid(found.get("Labels")) == uid:
            return ""
        own_in_container(classroom, volume, uid, image, node)
        return f"Your home volume is yours (uid {uid}) again, nothing deleted"
    files = Path((found or {}).get("Mountpoint") or "/nonexistent")  # where this host sees the home's files
    if homefs.enabled(classroom):  # a limited subvolume, (re)limited at every start (a changed profile, `d2lhub quota`)
        path = homefs.home_path(classroom, volume)
        new = homefs.make_home(path, uid)
        homefs.set_limit(path, limit)
        if found is None:
            client.create_volume(volume, driver="local", driver_opts=bind_options(path), labels=owned)
            return "Created your home volume" if new else ""
        if not bound_to(found, path):
            raise HomeRefused(f"The home volume {volume} is not on the homes file system yet: "
                              "the course admin runs `make up` (it moves old homes there).")
        files = path  # a bind volume's own mount point is empty until a container mounts it
    elif found is None:
        _, options = engine.volume_driver(classroom, volume)
        created = engine.make_volume(client, classroom, volume, owned)
        if options or not own_on_host(Path(created.get("Mountpoint") or "/nonexistent"), uid):
            own_in_container(classroom, volume, uid, image)
        return "Created your home volume"
    owner = owner_on_host(files)
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


def bind_options(path: Path) -> dict[str, str]:
    return {"type": "none", "o": "bind", "device": str(path)}


def bound_to(volume: dict, path: Path) -> bool:
    return (volume.get("Options") or {}).get("device") == str(path)


def ensure_filesystem(client, classroom: Classroom, say=lambda _: None) -> None:
    """The homes file system mounted with quotas, the submissions' subvolume in place, old homes moved in."""
    inbounds = {o.id: layout.inbound_dir(classroom, o) for o in classroom.offerings}
    if homefs.ensure(classroom, inbounds, say) is not None:
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


def owner_on_host(mountpoint: Path) -> int | None:
    """The owner of a local volume's files, when this process can see them (root, local engine)."""
    if os.geteuid() != 0 or not mountpoint.is_dir():
        return None
    return mountpoint.stat().st_uid


def own_on_host(mountpoint: Path, uid: int) -> bool:
    """Fast path when the engine is local and we are root: no extra container per new student."""
    if os.geteuid() != 0 or not mountpoint.is_dir():
        return False
    homefs.claim(mountpoint, uid)
    return True


def own_in_container(classroom: Classroom, volume: str, uid: int, image: str,
                     client: docker.DockerClient | None = None) -> None:
    """A throwaway root container makes the home the student's: every file in it (links themselves,
    never their targets), the home folder last, so a home owned right was put right in full.
    Skipped inside when the home folder already belongs to `uid` (a label older than a fix)."""
    owner = f"{uid}:{STUDENT_GID}"
    script = (
        f'[ "$(stat -c %u:%g {HOME})" = "{owner}" ] && [ -d {HOME}/{MARKER} ] && exit 0; '
        f"mkdir -p {HOME}/{MARKER} && find {HOME} -mindepth 1 -exec chown -h {owner} {{}} + "
        f"&& chown {owner} {HOME} && chmod 700 {HOME}"
    )
    client = client or engine.docker_client(timeout=600)  # this host's, or the node's that holds the home
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
