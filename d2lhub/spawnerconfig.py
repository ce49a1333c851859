"""The `spawner:` section of classroom.yaml: how and where students' servers run (this host's engine
or a Swarm), their uids, the packet rules, the registry nodes pull from, and where homes live.
Kept out of d2lhub.config so that module stays the list of the other sections.
"""

from __future__ import annotations

from ipaddress import IPv4Network
from typing import Literal

from pydantic import Field

from d2lhub.limits import Strict


class Spawner(Strict):
    instance: str = Field(
        "d2lhub",
        pattern=r"^[a-z0-9][a-z0-9_.-]{0,40}$",
        description="names and labels the network, containers and volumes of this hub",
    )
    uid_base: int = Field(
        20000, ge=1001,
        description="students' uids are handed out above it, once per name, kept in state_dir/uids.json and never "
        "reused (an existing home volume's uid is kept); also the graders' group id",
    )
    docker_workers: int = Field(8, ge=1, le=64, description="Docker calls run in parallel, at most this many")
    firewall: bool = Field(True, description="fence student containers in with iptables: no private ranges, no "
                           "cloud metadata, only the hub's API port on the host, and network.egress "
                           "(needs root on the host)")
    kind: Literal["docker", "swarm"] = Field(
        "docker", description="docker: containers on this host; swarm: services on the Swarm this engine manages"
    )
    hub_address: str = Field("", pattern=r"^[0-9a-zA-Z.:-]*$", description="swarm: the address student servers "
                             "reach the hub at (the manager's LAN address); empty: the Swarm's advertised address, "
                             "or this host's docker0 gateway on a single node")
    registry: str = Field(
        "",
        pattern=r"^([0-9a-zA-Z.-]+:[0-9]{1,5})?$",
        description="swarm: HOST:PORT where nodes reach the hub's own registry (Debian's docker-registry, TLS with "
        "the hub's certificate); the hub pushes the student images there and services name them by digest; "
        "empty: by local image ID (every node must hold the image)",
    )
    homes: Literal["shared", "node"] = Field(
        "shared",
        description="swarm: where students' homes live. shared: volumes of volume_driver/volume_options, which "
        "every node reaches (NFS); node: a plain volume on the node that first runs the student's server, "
        "chosen by free room; the server is always placed there, and `d2lhub nodes drain` moves a node's "
        "homes to others before it leaves",
    )
    node_engine: str = Field(
        "ssh://root@{node}", pattern=r"^(ssh|tcp|unix)://.*\{node\}",
        description="swarm with homes: node: how the hub reaches another node's Docker engine to make, own and "
        "move homes there ({node}: its hostname as `d2lhub nodes list` shows it)",
    )
    volume_driver: str = Field("local", min_length=1, description="driver of home and data volumes")
    volume_options: dict[str, str] = Field(
        {},
        description="driver options of home and data volumes; {volume} becomes the volume's name "
        "(NFS: {type: nfs, o: 'addr=HOST,rw,nfsvers=4', device: ':/export/d2lhub/{volume}'})",
    )
    blocked_networks: tuple[IPv4Network, ...] = Field(
        tuple(IPv4Network(n) for n in ("169.254.0.0/16", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")),
        description="destinations students may not reach: cloud metadata and private ranges",
    )
