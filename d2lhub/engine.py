"""The Docker engine as every part of d2lhub meets it: the client, the classroom's networks and
shared volumes, and the one hardened shape of a throwaway container.

Setting an engine up (installing dockerd, building images) is `d2lhub.ops`'s; this module only
uses an engine that answers, so the hub, the course pipeline and grading can all import it.
"""

from __future__ import annotations

import fcntl
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors

from d2lhub import labels
from d2lhub.config import Classroom

SIOCGIFADDR = 0x8915  # Linux ioctl: an interface's IPv4 address


class EngineError(Exception):
    """The engine lacks something the classroom needs; the message says what to do."""


def docker_client(timeout: int = 120, **kwargs) -> docker.DockerClient:
    return docker.from_env(timeout=timeout, **kwargs)


def engine_answers() -> bool:
    try:
        docker_client(timeout=5).ping()
        return True
    except Exception:
        return False


def has_image(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
        return True
    except docker.errors.ImageNotFound:
        return False


def throwaway(
    instance: str, role: str, *, user: str = "0", network: str = "none", cap_add: Iterable[str] = (), **settings
) -> dict:
    """docker-py `containers.create` arguments for a short-lived helper container.

    Every one starts from the same hardening: no capability but those named, no privilege
    gain, no network unless asked for, and the labels that let the hub find and remove it.
    """
    return {
        "labels": {labels.INSTANCE: instance, labels.ROLE: role},
        "user": user,
        "network_mode": network,
        "cap_drop": ["ALL"],
        "cap_add": list(cap_add) or None,
        "security_opt": ["no-new-privileges"],
        **settings,
    }


def volume_driver(classroom: Classroom, name: str) -> tuple[str, dict[str, str]]:
    """The driver and options of a home or data volume ({volume} in an option becomes its name)."""
    settings = classroom.spawner
    return settings.volume_driver, {k: v.replace("{volume}", name) for k, v in settings.volume_options.items()}


def make_volume(client, classroom: Classroom, name: str, volume_labels: dict[str, str]) -> dict:
    """Create a home or data volume with the classroom's driver; a `local` bind volume's folder is made first
    (a folder every node sees at the same path: an NFS mount, or the test bed's shared folder)."""
    driver, options = volume_driver(classroom, name)
    if driver == "local" and "bind" in options.get("o", "").split(",") and options.get("device", "").startswith("/"):
        Path(options["device"]).mkdir(parents=True, exist_ok=True)
    api = getattr(client, "api", client)  # a DockerClient, or the low-level APIClient DockerSpawner holds
    return api.create_volume(name, driver=driver, driver_opts=options or None, labels=volume_labels)


def ensure_data_volume(client: docker.DockerClient, classroom: Classroom) -> str:
    """Create the data volume empty and labelled if missing, so a server never mounts an unlabelled one."""
    name = labels.data_volume(classroom.spawner.instance)
    try:
        client.volumes.get(name)
    except docker.errors.NotFound:
        make_volume(client, classroom, name, {labels.INSTANCE: classroom.spawner.instance, labels.ROLE: "data"})
    return name


def ensure_network(client: docker.DockerClient, name: str, instance: str):
    """A bridge for student containers, with container-to-container traffic off (students can't reach each other)."""
    try:
        return client.networks.get(name)
    except docker.errors.NotFound:
        network = client.networks.create(
            name,
            driver="bridge",
            options={"com.docker.network.bridge.enable_icc": "false"},
            labels={labels.INSTANCE: instance},
        )
        network.reload()
        return network


def ensure_swarm_network(client: docker.DockerClient, instance: str):
    """A Swarm-scoped bridge for student services: each node makes its own local bridge of it when a
    student's task lands there (so published ports work and nothing crosses nodes). Swarm-scoped
    bridges drop driver options such as enable_icc; the firewall keeps containers apart instead."""
    name = labels.swarm_network(instance)
    try:
        return client.networks.get(name)
    except docker.errors.NotFound:
        return client.networks.create(name, driver="bridge", scope="swarm", labels={labels.INSTANCE: instance})


def swarm_manager_address(client: docker.DockerClient) -> str:
    """This engine's Swarm address; fails with what to do when it is no Swarm manager."""
    swarm = client.info().get("Swarm") or {}
    if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
        raise EngineError(
            "spawner.kind is swarm but this Docker engine is not a Swarm manager: "
            "run `docker swarm init --advertise-addr ADDRESS` here (docs/admin.md, Several hosts)"
        )
    return swarm.get("NodeAddr") or ""


def network_gateway(network) -> str:
    """The host's address on a bridge network, where its containers reach the hub.

    An engine's first start records the default bridge without its gateway (later starts
    record it), so the bridge interface's own address answers then.
    """
    configs = network.attrs.get("IPAM", {}).get("Config") or []
    for config in configs:
        if config.get("Gateway"):
            return config["Gateway"]
    interface = (network.attrs.get("Options") or {}).get("com.docker.network.bridge.name")
    address = interface_address(interface) if interface else None
    if address:
        return address
    raise EngineError(f"network {network.name} has no gateway address")


def interface_address(name: str) -> str | None:
    """The IPv4 address of a network interface on this host (SIOCGIFADDR); None when it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            request = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(request[20:24])


@dataclass(frozen=True)
class Node:
    hostname: str
    id: str
    role: str
    availability: str
    state: str
    cpus: float
    memory: int
    gpus: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def schedulable(self) -> bool:
        return self.availability == "active" and self.state == "ready"

    @classmethod
    def from_swarm(cls, attrs: dict) -> Node:
        spec, description = attrs.get("Spec", {}), attrs.get("Description", {})
        resources = description.get("Resources", {})
        node_labels = spec.get("Labels") or {}
        gpus = tuple(gpu for gpu in node_labels.get(labels.NODE_GPUS, "").split(",") if gpu)
        return cls(
            hostname=description.get("Hostname", attrs.get("ID", "?")),
            id=attrs.get("ID", ""),
            role=spec.get("Role", "worker"),
            availability=spec.get("Availability", "active"),
            state=attrs.get("Status", {}).get("State", "unknown"),
            cpus=resources.get("NanoCPUs", 0) / 1e9,
            memory=resources.get("MemoryBytes", 0),
            gpus=gpus,
            labels=node_labels,
        )


@dataclass(frozen=True)
class NodeUse:
    """What this hub's running servers take on one node."""

    students: tuple[str, ...] = ()
    cpus: float = 0
    memory: int = 0
    gpus: tuple[str, ...] = ()  # the GPU ids assigned, once per student holding them


def fits_on(node: Node, classroom: Classroom, profile_name: str, use: NodeUse = NodeUse()) -> int:
    """Students of one profile that fit on a node at once (beside `use`): the scarcest of CPU, memory and GPU slots."""
    profile = classroom.profile(profile_name)
    limits = classroom.limits_for(profile)
    if not node.schedulable:
        return 0
    counts = [int((node.cpus - use.cpus + 1e-9) // limits.cpu), (node.memory - use.memory) // limits.memory]
    if profile.gpus:
        counts.append((len(node.gpus) * classroom.gpus.students_per_gpu - len(use.gpus)) // profile.gpus)
    return max(0, min(counts))


def node_address(attrs: dict) -> str:
    """Where the hub reaches a node's published ports: its Swarm address (a manager may report 0.0.0.0)."""
    address = attrs.get("Status", {}).get("Addr") or ""
    if address in ("", "0.0.0.0"):
        address = (attrs.get("ManagerStatus") or {}).get("Addr", "").rsplit(":", 1)[0]
    return address or "127.0.0.1"
