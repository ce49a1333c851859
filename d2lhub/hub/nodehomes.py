"""Homes on the Swarm's nodes (`spawner.homes: node`): a home is a plain volume on one node, and its
student's server always runs there.

Where no file system reaches every node (no NFS), a home stays on the node that holds it. The
hub chooses that node when a student first starts, by free room among the nodes their profile
may run on, makes the home there through that node's engine (`spawner.node_engine`: ssh, TLS
or a socket), and pins the server to it with a placement constraint. Which node holds whose
home is kept in `state_dir/home-nodes.json` (under a file lock: the hub and `d2lhub nodes drain`
both write it). A home moves (`move`) through the two engines' APIs: the source's files are read
as a tar stream from a throwaway container that mounts it and written into one that
mounts the new volume on the target, then given to the student's uid; the old volume is
removed only after that. `d2lhub nodes drain` moves every home off a node; a GPU student whose
GPUs are on another node than their home has it moved there at start.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager

import docker
import docker.errors

from d2lhub import engine, labels
from d2lhub.config import Classroom, Profile
from d2lhub.engine import Node
from d2lhub.hub import homes
from d2lhub.state import in_state
from d2lhub.studentimage import HOME

RECORDS = "home-nodes.json"


@contextmanager
def records(classroom: Classroom) -> Iterator[dict[str, str]]:
    """Student -> the hostname of the node holding their home; changes are written back on exit."""
    path = in_state(classroom, RECORDS)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = json.loads(path.read_text()) if path.exists() else {}
        before = dict(found)
        yield found
        if found != before:
            partial = path.with_suffix(".partial")
            partial.write_text(json.dumps(found, indent=1, sort_keys=True))
            os.replace(partial, path)


def engine_for(classroom: Classroom, hostname: str, hub_hostname: str) -> docker.DockerClient:
    """The Docker engine of a node: this host's own, or `spawner.node_engine` with the node's hostname."""
    if hostname == hub_hostname:
        return engine.docker_client(timeout=600)
    url = classroom.spawner.node_engine.replace("{node}", hostname)
    return docker.DockerClient(base_url=url, timeout=600, use_ssh_client=url.startswith("ssh://"))


def choose(nodes: list[Node], classroom: Classroom, profile: Profile, held: dict[str, str]) -> Node:
    """The node a new home goes to: the one with the most room per home it holds already, among the ready
    nodes this profile may run on (a GPU profile's assigned node is chosen by the caller)."""
    reserved = classroom.gpus.reserve_nodes and not profile.gpus
    eligible = [n for n in nodes if n.schedulable and not (reserved and n.gpus)
                and engine.fits_on(n, classroom, profile.name) > 0]
    if not eligible:
        raise homes.HomeRefused(f"No node can hold a new home for a {profile.display_name} server: "
                                "the course admin adds one (`d2lhub nodes add`) or frees one.")
    count = {n.hostname: 0 for n in eligible}
    for hostname in held.values():
        if hostname in count:
            count[hostname] += 1
    return max(eligible, key=lambda n: (engine.fits_on(n, classroom, profile.name) / (1 + count[n.hostname]), n.hostname))


def ensure_image(client: docker.DockerClient, image: str) -> None:
    """The image on that node: pulled (from the hub's registry, by digest) when it lacks it."""
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        client.images.pull(image)


def move(classroom: Classroom, volume: str, uid: int, source: docker.DockerClient, target: docker.DockerClient,
         image: str) -> None:
    """Copy a home from one node's engine to another's, give it to `uid` there, then remove the original."""
    instance = classroom.spawner.instance
    found = source.api.inspect_volume(volume)
    for client in (source, target):
        ensure_image(client, image)
    target.api.create_volume(volume, driver="local", labels=found.get("Labels") or {})
    holders = []
    try:
        for client, mode in ((source, "ro"), (target, "rw")):
            holders.append(client.containers.run(
                image, entrypoint=["sleep", "3600"], volumes={volume: {"bind": HOME, "mode": mode}}, detach=True,
                **engine.throwaway(instance, "home-move")))
        stream, _ = holders[0].get_archive(HOME)  # a tar of jovyan/..., read as it is written to the target
        if not holders[1].put_archive(os.path.dirname(HOME), stream):
            raise RuntimeError(f"{volume} could not be written on the target node")
    finally:
        for holder in holders:
            holder.remove(force=True)
    homes.own_in_container(classroom, volume, uid, image, target)
    for ended in source.containers.list(all=True, filters={"volume": volume, "status": "exited"}):
        ended.remove()  # the student's past Swarm tasks there, which still name the volume
    source.api.remove_volume(volume)


def uid_of(client: docker.DockerClient, volume: str) -> int:
    """The uid a home records on its label (the hub wrote it at creation)."""
    uid = (client.api.inspect_volume(volume).get("Labels") or {}).get(labels.UID, "")
    if not uid.isdigit():
        raise RuntimeError(f"home volume {volume} records no uid ({labels.UID})")
    return int(uid)
