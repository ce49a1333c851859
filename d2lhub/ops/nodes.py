"""Swarm nodes: list, add (join command + labels), drain, and how many students fit.

GPU nodes carry the labels `org.d2lhub.node-gpus=0,1` (their device ids, which the capacity
report and the GPU allocator read) and `org.d2lhub.gpu=true`, which GPU profiles' placement
constraints match (Swarm constraints compare values; they cannot ask "label not empty").
"""

from __future__ import annotations

import time

import docker
import docker.errors

from d2lhub import labels
from d2lhub.config import Classroom
from d2lhub.engine import Node, NodeUse, fits_on
from d2lhub.ops import registry
from d2lhub.studentimage import built_image

NOT_MANAGER = "this Docker engine is not a Swarm manager: run `docker swarm init` here first"


class NodeError(Exception):
    """The engine is not a Swarm manager, or a node is unknown; the message says what to do."""


def capacity(nodes: list[Node], classroom: Classroom) -> dict[str, int]:
    """Per profile: how many students fit at once if everyone chose it."""
    return {p.name: sum(fits_on(node, classroom, p.name) for node in nodes) for p in classroom.profiles}


def usage(client: docker.DockerClient, instance: str) -> dict[str, NodeUse]:
    """Node ID -> the students whose servers run there, with the CPUs, memory and GPUs they hold."""
    found: dict[str, NodeUse] = {}
    for service in client.services.list(filters=labels.labelled(instance)):
        spec = service.attrs["Spec"]
        tags = spec.get("Labels") or {}
        if labels.USER not in tags:  # the hub's other services (the nodes' packet rules)
            continue
        limits = spec["TaskTemplate"].get("Resources", {}).get("Limits", {})
        gpus = tuple(gpu for gpu in tags.get(labels.SERVER_GPUS, "").split(",") if gpu)
        for task in service.tasks(filters={"desired-state": "running"}):
            was = found.get(task.get("NodeID", ""), NodeUse())
            found[task.get("NodeID", "")] = NodeUse(
                tuple(sorted((*was.students, tags[labels.USER]))), was.cpus + limits.get("NanoCPUs", 0) / 1e9,
                was.memory + limits.get("MemoryBytes", 0), was.gpus + gpus)
    return found


def swarm_nodes(client: docker.DockerClient) -> list:
    try:
        return client.nodes.list()
    except docker.errors.APIError as error:
        if error.status_code == 503:
            raise NodeError(NOT_MANAGER) from None
        raise


def list_nodes(client: docker.DockerClient) -> list[Node]:
    return sorted((Node.from_swarm(n.attrs) for n in swarm_nodes(client)), key=lambda n: n.hostname)


def find(client: docker.DockerClient, hostname: str):
    for node in swarm_nodes(client):
        if node.attrs.get("Description", {}).get("Hostname") == hostname or node.id == hostname:
            return node
    raise NodeError(f"no node {hostname!r} in this Swarm; `d2lhub nodes list` shows them")


def join_command(client: docker.DockerClient, manager: bool = False) -> str:
    try:
        client.swarm.reload()
        tokens = client.swarm.attrs["JoinTokens"]
    except (docker.errors.APIError, KeyError):
        raise NodeError(NOT_MANAGER) from None
    managers = client.info()["Swarm"].get("RemoteManagers") or []
    address = managers[0]["Addr"] if managers else "MANAGER-IP:2377"
    return f"docker swarm join --token {tokens['Manager' if manager else 'Worker']} {address}"


def join_script(client: docker.DockerClient, classroom: Classroom | None = None) -> str:
    """What a new node runs, as root, to join: trust the hub's registry (when it has one), then join.

    Safe to run twice: a node already in a Swarm skips the join."""
    lines = registry.trust_commands(classroom) if classroom is not None and classroom.spawner.registry else []
    state = "$(docker info --format '{{.Swarm.LocalNodeState}}')"
    lines.append(f'[ "{state}" = active ] || {join_command(client)}')
    return "\n".join(lines)


def node_labels(gpus: tuple[str, ...]) -> dict[str, str]:
    return {labels.NODE_GPUS: ",".join(gpus), labels.NODE_GPU_FLAG: "true"} if gpus else {}


def label(client: docker.DockerClient, hostname: str, added: dict[str, str]) -> None:
    node = find(client, hostname)
    spec = dict(node.attrs["Spec"])
    spec["Labels"] = {**(spec.get("Labels") or {}), **added}
    node.update(spec)


def students_on(client: docker.DockerClient, hostname: str, instance: str) -> list[str]:
    """Students whose servers run on a node (the Swarm spawner's tasks of this hub)."""
    return list(usage(client, instance).get(find(client, hostname).id, NodeUse()).students)


def drain(client: docker.DockerClient, hostname: str) -> None:
    node = find(client, hostname)
    spec = dict(node.attrs["Spec"])
    spec["Availability"] = "drain"
    node.update(spec)


def move_homes(client: docker.DockerClient, classroom: Classroom, hostname: str, say=print,
               wait_seconds: float = 120) -> list[str]:
    """Every home a drained node holds (`spawner.homes: node`), moved to the other nodes with the most room,
    once its servers have stopped; the students whose homes moved."""
    from d2lhub.hub import nodehomes  # only a classroom with homes on its nodes needs it
    from d2lhub.hub.swarmspawner import pinned_image

    instance = classroom.spawner.instance
    hub_hostname = client.info()["Name"]
    source = nodehomes.engine_for(classroom, hostname, hub_hostname)
    servers = {"label": [f"{labels.INSTANCE}={instance}", labels.USER], "status": "running"}
    deadline = time.monotonic() + wait_seconds
    while running := source.containers.list(filters=servers):
        if time.monotonic() > deadline:
            raise NodeError(f"servers still run on {hostname} after {wait_seconds:.0f} s "
                            f"({', '.join(c.labels[labels.USER] for c in running)}): their homes stay there; "
                            "run the drain again")
        time.sleep(1)
    tag = built_image(classroom, client)
    image = pinned_image(client.api.inspect_image(tag), tag, classroom.spawner.registry)
    others = [node for node in list_nodes(client) if node.hostname != hostname]
    with nodehomes.records(classroom) as held:
        leaving = sorted(user for user, where in held.items() if where == hostname)
    for user in leaving:
        [volume] = source.volumes.list(filters={"label": [f"{labels.INSTANCE}={instance}", f"{labels.USER}={user}"]})
        with nodehomes.records(classroom) as held:
            target = nodehomes.choose(others, classroom, classroom.profiles[0], held).hostname
        nodehomes.move(classroom, volume.name, nodehomes.uid_of(source, volume.name), source,
                       nodehomes.engine_for(classroom, target, hub_hostname), image)
        with nodehomes.records(classroom) as held:
            held[user] = target
        say(f"moved {user}'s home ({volume.name}) from {hostname} to {target}")
    return leaving
