"""Swarm nodes: list, add (join command + labels), drain, and how many students fit.

GPU nodes carry the labels `org.d2lhub.node-gpus=0,1` (their device ids, which the capacity
report and the GPU allocator read) and `org.d2lhub.gpu=true`, which GPU profiles' placement
constraints match (Swarm constraints compare values; they cannot ask "label not empty").
"""

from __future__ import annotations

import docker
import docker.errors

from d2lhub import labels
from d2lhub.config import Classroom
from d2lhub.engine import Node
from d2lhub.ops import registry

NOT_MANAGER = "this Docker engine is not a Swarm manager: run `docker swarm init` here first"


class NodeError(Exception):
    """The engine is not a Swarm manager, or a node is unknown; the message says what to do."""


def fits_on(node: Node, classroom: Classroom, profile_name: str) -> int:
    """Students of one profile that fit on a node at once: the scarcest of CPU, memory and GPU slots."""
    profile = classroom.profile(profile_name)
    limits = classroom.limits_for(profile)
    if not node.schedulable:
        return 0
    counts = [int(node.cpus // limits.cpu), node.memory // limits.memory]
    if profile.gpus:
        counts.append(len(node.gpus) * classroom.gpus.students_per_gpu // profile.gpus)
    return max(0, min(counts))


def capacity(nodes: list[Node], classroom: Classroom) -> dict[str, int]:
    """Per profile: how many students fit at once if everyone chose it."""
    return {p.name: sum(fits_on(node, classroom, p.name) for node in nodes) for p in classroom.profiles}


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
    node = find(client, hostname)
    services = {s.id: s for s in client.services.list(filters=labels.labelled(instance))}
    names = []
    for task in client.api.tasks(filters={"node": node.id, "desired-state": "running"}):
        service = services.get(task.get("ServiceID"))
        if service is not None:
            names.append(service.attrs["Spec"].get("Labels", {}).get(labels.USER, service.name))
    return sorted(names)


def drain(client: docker.DockerClient, hostname: str) -> None:
    node = find(client, hostname)
    spec = dict(node.attrs["Spec"])
    spec["Availability"] = "drain"
    node.update(spec)
