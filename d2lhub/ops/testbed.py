"""A multi-node Swarm on one machine (`make cluster`, and the tests' fixture): this host's engine
is the manager, and each extra node is a Docker engine in a container (Debian's docker.io in
images/node) on a bridge network of its own, joined as a worker exactly as `d2lhub nodes add`
tells an admin to join a real machine. Try scale-out before buying machines; remove it again
with `make cluster-down`.

The nodes' containers need most capabilities (not `--privileged`, which some sandboxes refuse)
and the host's cgroup tree; each inner engine keeps its containers under a cgroup parent of its
own. A Swarm this module made (the engine was in none) is left again on removal; a Swarm that
was there is kept, only the test bed's nodes are removed from it.

    python -m d2lhub.ops.testbed up [--config classroom.yaml] [--workers 2] [--gpus 0]  # last worker: GPU labels
    python -m d2lhub.ops.testbed down [--name N]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors

from d2lhub import config, labels
from d2lhub.engine import EngineError, docker_client, network_gateway
from d2lhub.ops import liverestore, nodes, registry

MADE_SWARM = "org.d2lhub.testbed-made-swarm"  # on the test bed's network: leave the Swarm on removal
MADE_GWBRIDGE = "org.d2lhub.testbed-made-gwbridge"  # ... and remove the bridge its init made
GWBRIDGE = "docker_gwbridge"  # `docker swarm init` makes it, `leave` does not remove it
SOCKETS = Path("/run/d2lhub-testbed")  # each node's engine socket, seen from this host
NODE_FLAGS = [
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--security-opt", "systempaths=unconfined",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run",
]


class TestbedError(EngineError):
    """The test bed cannot start; the message says why."""


@dataclass
class Testbed:
    name: str  # the network, the nodes' prefix and their org.d2lhub.instance label
    address: str = ""  # the manager (this host) as the nodes reach it: the network's gateway
    workers: list[str] = field(default_factory=list)  # node hostnames (= container names)

    def node_name(self, index: int) -> str:
        return f"{self.name}-node{index}"

    @property
    def sockets(self) -> Path:
        """Where this host reaches each node's engine (a second socket of its dockerd), as an admin's
        hub reaches a real node's over ssh: `spawner.node_engine` is `node_engine`."""
        return SOCKETS / self.name

    @property
    def node_engine(self) -> str:
        return f"unix://{self.sockets}/{{node}}/docker.sock"


def docker_cli(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], check=check, capture_output=True, text=True, timeout=timeout)


def inner(node: str, script: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a shell script on a node, as root, as an admin would over ssh."""
    return docker_cli("exec", node, "sh", "-ec", script, check=check, timeout=timeout)


def ensure_manager(client: docker.DockerClient, address: str) -> bool:
    """This engine as a Swarm manager the nodes reach at `address`; True when the Swarm was made here."""
    info = client.info()
    swarm = info["Swarm"]
    if swarm["LocalNodeState"] == "inactive":
        liverestore.ensure(client, "swarm", say=lambda line: print(f"d2lhub: {line}"))  # Docker refuses it in a Swarm
        client.swarm.init(advertise_addr=address, listen_addr=f"{address}:2377")
        return True
    if not swarm.get("ControlAvailable"):
        raise TestbedError("this engine is a Swarm worker; the test bed needs it to be a manager")
    if (swarm.get("NodeAddr") or "").startswith("127."):
        raise TestbedError(f"this engine's Swarm is advertised at {swarm['NodeAddr']}, which no other engine reaches: "
                           "`docker swarm leave --force` it (or re-init with --advertise-addr) first")
    return False


def start_node(bed: Testbed, index: int, image: str, shared: tuple[Path, ...] = ()) -> str:
    node = bed.node_name(index)
    same_path = [arg for folder in shared for arg in ("-v", f"{folder}:{folder}")]
    docker_cli("volume", "create", "--label", f"{labels.INSTANCE}={bed.name}", node)
    (bed.sockets / node).mkdir(parents=True, exist_ok=True)
    docker_cli(
        "run", "-d", "--name", node, "--hostname", node, "--network", bed.name,
        "--label", f"{labels.INSTANCE}={bed.name}", "--label", f"{labels.ROLE}=testbed-node",
        *NODE_FLAGS, "-v", f"{node}:/var/lib/docker", "-v", f"{bed.sockets / node}:/outside", *same_path, image,
        "dockerd", "--cgroup-parent", f"/{node}", "--host", "unix:///var/run/docker.sock",
        "--host", "unix:///outside/docker.sock",
    )
    return node


def wait_engine(node: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while inner(node, "docker version --format '{{.Server.Version}}'", check=False).returncode != 0:
        if time.monotonic() > deadline:
            logs = docker_cli("logs", "--tail", "15", node, check=False)
            raise TestbedError(f"the engine in {node} did not start:\n{logs.stdout}{logs.stderr}")
        time.sleep(0.5)


def prepare(client: docker.DockerClient, name: str) -> Testbed:
    """The test bed's network and this engine as the Swarm's manager, advertised on that network."""
    state = client.info()["Swarm"]
    try:
        network = client.networks.get(name)
        if state["LocalNodeState"] == "inactive" and MADE_SWARM not in (network.attrs.get("Labels") or {}):
            network.remove()  # left from a Swarm that is gone: remade below, saying the new one is ours
            raise docker.errors.NotFound(name)
    except docker.errors.NotFound:
        made = {MADE_SWARM: "true"} if state["LocalNodeState"] == "inactive" else {}
        if made and not client.networks.list(names=[GWBRIDGE]):
            made[MADE_GWBRIDGE] = "true"
        network = client.networks.create(name, driver="bridge", labels={labels.INSTANCE: name, **made})
    bed = Testbed(name, network_gateway(network))
    ensure_manager(client, bed.address)
    return bed


def add_workers(client: docker.DockerClient, bed: Testbed, workers: int, script: str, gpus: tuple[str, ...] = (),
                shared: tuple[Path, ...] = (), say=print) -> None:
    """Nodes 1..`workers` (those missing are started), each running `script` (what `d2lhub nodes add --script`
    prints: trust the registry, join); the last is labelled with `gpus`.

    `shared` folders appear at the same path on every node, as `hub.state_dir` must (an NFS mount on real machines)."""
    image = registry.node_image(client, "debian:bookworm-slim", say)
    running = {c.name for c in client.containers.list(filters={"label": f"{labels.INSTANCE}={bed.name}"})}
    for index in range(1, workers + 1):
        node = bed.node_name(index)
        if node not in running:
            start_node(bed, index, image, shared)
        wait_engine(node)
        inner(node, script)
        bed.workers.append(node)
        say(f"{node} is in the Swarm")
    for node in bed.workers:
        wait_ready(client, node)
    if gpus and bed.workers:
        nodes.label(client, bed.workers[-1], nodes.node_labels(gpus))


def wait_ready(client: docker.DockerClient, hostname: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if nodes.find(client, hostname).attrs["Status"]["State"] == "ready":
                return
        except nodes.NodeError:
            pass
        if time.monotonic() > deadline:
            raise TestbedError(f"node {hostname} did not become ready in the Swarm")
        time.sleep(0.5)


def down(client: docker.DockerClient, name: str) -> None:
    """Remove the nodes (from the Swarm too), their volumes and the network; leave a Swarm made by `up`."""
    try:
        network = client.networks.get(name)
        made = network.attrs.get("Labels") or {}
    except docker.errors.NotFound:
        network, made = None, {}
    containers = client.containers.list(all=True, filters={"label": f"{labels.INSTANCE}={name}"})
    for container in containers:
        if container.labels.get(labels.ROLE) == "testbed-node":
            inner(container.name, "docker swarm leave --force", check=False, timeout=30)
            container.remove(force=True)
            client.volumes.get(container.name).remove(force=True)
    for node in client.nodes.list() if client.info()["Swarm"].get("ControlAvailable") else []:
        if node.attrs["Description"]["Hostname"].startswith(f"{name}-node"):
            node.remove(force=True)
    if made.get(MADE_SWARM) == "true":
        client.swarm.leave(force=True)
        if made.get(MADE_GWBRIDGE) == "true":
            docker_cli("network", "rm", GWBRIDGE, check=False)
    if network is not None:
        network.remove()
    shutil.rmtree(SOCKETS / name, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m d2lhub.ops.testbed", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--name", default="d2lhub-testbed")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--gpus", default="", help="GPU ids to label the last worker with (a fake inventory)")
    parser.add_argument("--config", type=Path, help="classroom.yaml: share its state_dir, trust its registry")
    args = parser.parse_args()
    client = docker_client()
    if args.action == "down":
        down(client, args.name)
        print(f"test bed {args.name} removed")
        return
    classroom = config.load(args.config) if args.config else None
    shared = (classroom.hub.state_dir,) if classroom else ()
    for folder in shared:
        folder.mkdir(parents=True, exist_ok=True)
    bed = prepare(client, args.name)
    gpus = tuple(g for g in args.gpus.split(",") if g)
    add_workers(client, bed, args.workers, nodes.join_script(client, classroom), gpus, shared)
    print(f"\nA Swarm of {1 + len(bed.workers)} engines: this host (manager, {bed.address}) and {', '.join(bed.workers)}.")
    if classroom is None or classroom.spawner.registry != f"{bed.address}:5000":
        print(f"In classroom.yaml set spawner: {{kind: swarm, hub_address: {bed.address}, registry: \"{bed.address}:5000\", "
              f"homes: node, node_engine: \"{bed.node_engine}\"}} and run `make cluster` again (the nodes then trust "
              "the registry), then `make up`.")
    print("`d2lhub nodes list` shows the nodes; `make cluster-down` removes them.")


if __name__ == "__main__":
    main()
