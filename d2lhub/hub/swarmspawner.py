"""The Swarm spawner (`spawner.kind: swarm`): one service per student, so servers run on any node."""

from __future__ import annotations

import asyncio

from docker.types import DriverConfig, Mount, RestartPolicy
from dockerspawner import SwarmSpawner

from d2lhub import engine, labels
from d2lhub.grading import layout
from d2lhub.hub import homes, nodehomes
from d2lhub.hub.spawner import ClassroomMixin
from d2lhub.studentimage import STUDENT_GID

TASK_FAILED = {"failed", "rejected", "shutdown", "complete", "orphaned", "remove"}


def tmpfs_mounts(spec: dict[str, str]) -> list[Mount]:
    """Docker's `tmpfs` host option ({path: "size=1m,mode=1777"}) as Swarm mounts."""
    mounts = []
    for target, options in spec.items():
        parsed = dict(item.split("=", 1) for item in options.split(",") if "=" in item)
        size = parsed.get("size")
        mounts.append(
            Mount(
                target, None, type="tmpfs",
                tmpfs_size=size.upper() if size else None,
                tmpfs_mode=int(parsed["mode"], 8) if "mode" in parsed else None,
            )
        )
    return mounts


def pinned_image(attrs: dict, tag: str, registry: str) -> str:
    """The exact image every node runs: `REGISTRY/NAME@sha256:...` as the hub pushed it (nodes pull that
    digest from the hub's registry), or, with no registry, the image's ID (every node must hold it)."""
    if not registry:
        return attrs["Id"]
    repository = f"{registry}/{tag.rsplit(':', 1)[0]}@"
    pushed = [ref for ref in attrs.get("RepoDigests") or [] if ref.startswith(repository)]
    if not pushed:
        raise RuntimeError(f"The student image {tag} is not in the hub's registry {registry}: "
                           "the admin runs `d2lhub up`, which pushes it there")
    return pushed[0]


class ClassroomSwarmSpawner(ClassroomMixin, SwarmSpawner):
    """One Swarm service per student (`spawner.kind: swarm`), so servers run on any node.

    The task publishes JupyterLab's port in host mode on whichever node runs it; the hub
    reaches it at that node's address. Images are named by the digest the hub pushed to its
    own registry (`spawner.registry`), or by local ID where there is none.
    GPU profiles are placed on nodes labelled `org.d2lhub.gpu=true`, on the node whose
    GPUs the allocator chose, and get them through NVIDIA_VISIBLE_DEVICES (Swarm services
    cannot carry device requests; GPU nodes use the nvidia runtime by default).
    """

    def gpu_hosts(self) -> dict[str, tuple[str, ...]]:
        found = (engine.Node.from_swarm(attrs) for attrs in self.client.nodes())
        return {node.hostname: node.gpus for node in found if node.gpus}

    def _live_labels(self) -> list[dict]:
        instance = self.classroom.spawner.instance
        return [service["Spec"].get("Labels") or {} for service in self.client.services(filters=labels.labelled(instance))]

    @property
    def mounts(self) -> list[Mount]:
        """Named volumes (home, data) with this classroom's driver; host paths (course, exchange) as binds."""
        found = []
        for source, bind in self.volume_binds.items():
            read_only = bind["mode"] == "ro"
            if source.startswith("/"):
                found.append(Mount(bind["bind"], source, type="bind", read_only=read_only))
                continue
            driver, options = engine.volume_driver(self.classroom, source)
            if source == self.home_volume and self.classroom.spawner.homes == "node":
                driver, options = "local", {}  # a plain volume on the node that holds it (nodehomes)
            config = DriverConfig(driver, options) if options or driver != "local" else None
            found.append(
                Mount(bind["bind"], source, type="volume", read_only=read_only, driver_config=config,
                      labels={labels.INSTANCE: self.classroom.spawner.instance})
            )
        return found + tmpfs_mounts(layout.EXCHANGE_ROOT_TMPFS)

    def _describe_server(self, limits, server_labels, groups, assignment) -> None:
        self.extra_create_kwargs = {"labels": server_labels}
        self.extra_container_spec = {
            "user": f"{self.uid}:{STUDENT_GID}",
            "labels": server_labels,
            "cap_drop": ["ALL"],
            "init": False,  # tini is the image's entrypoint
            "groups": groups,
        }
        self._extra_env = {"NVIDIA_VISIBLE_DEVICES": ",".join(assignment.ids)} if assignment else {}
        self._pids = limits.pids
        constraints = []
        if assignment:
            constraints = [f"node.labels.{labels.NODE_GPU_FLAG}==true", f"node.hostname=={assignment.host}"]
        elif self.classroom.gpus.reserve_nodes:
            constraints = [f"node.labels.{labels.NODE_GPU_FLAG}!=true"]
        self.extra_placement_spec = {"constraints": constraints}
        self._assignment = assignment
        self.extra_task_spec = {"restart_policy": RestartPolicy(condition="none")}  # a dead server is the hub's to notice
        self.extra_endpoint_spec = {"ports": [{"Protocol": "tcp", "TargetPort": self.port, "PublishMode": "host"}]}

    _assignment = None

    def _prepare_home(self) -> str:
        """With `spawner.homes: node`, the home on its node (chosen now for a new one, or the GPUs' node),
        made there through that node's engine, and the server pinned to it (d2lhub.hub.nodehomes)."""
        if self.classroom.spawner.homes != "node":
            return super()._prepare_home()
        found = {n.hostname: n for n in (engine.Node.from_swarm(attrs) for attrs in self.client.nodes())}
        hub_hostname = self.client.info()["Name"]
        wanted = self._assignment.host if self._assignment else None
        with nodehomes.records(self.classroom) as held:
            was = held.get(self.user.name)
            if was is None:
                held[self.user.name] = wanted or nodehomes.choose(
                    list(found.values()), self.classroom, self.chosen_profile(), held).hostname
            elif wanted is None and not (was in found and found[was].schedulable):
                raise homes.HomeRefused(f"Your home is on node {was}, which is not taking servers now: the course "
                                        f"admin runs `d2lhub nodes drain {was}`, which moves its homes to other nodes.")
            elif wanted:
                held[self.user.name] = wanted
        where = held[self.user.name]
        image = pinned_image(self.client.inspect_image(self.image), self.image, self.classroom.spawner.registry)
        node = nodehomes.engine_for(self.classroom, where, hub_hostname)
        nodehomes.ensure_image(node, image)
        told = ""
        if was is not None and was != where:  # the GPUs are on another node: the home follows
            nodehomes.move(self.classroom, self.home_volume, self.uid,
                           nodehomes.engine_for(self.classroom, was, hub_hostname), node, image)
            told = f"Moved your home from {was} to {where}. "
        done = homes.prepare(node.api, self.classroom, self.home_volume, self.user.name, self.uid, image, node=node)
        self.extra_placement_spec["constraints"] = [*self.extra_placement_spec["constraints"], f"node.hostname=={where}"]
        return told + (f"{done} on {where}" if done else f"Your home is on {where}")

    def _docker(self, method, *args, **kwargs):
        if method == "create_service":
            # pids is not among docker-py's Resources arguments; the Swarm API (1.41+) takes Limits.Pids
            kwargs["task_template"].setdefault("Resources", {}).setdefault("Limits", {})["Pids"] = self._pids
        return super()._docker(method, *args, **kwargs)

    async def _started(self, assignment):
        self.image = pinned_image(await self.docker("inspect_image", self.image), self.image, self.classroom.spawner.registry)
        return await super()._started(assignment)

    async def start_object(self):
        """Wait until the task runs, telling the student why it waits (no node fits) and failing on a dead task."""
        told: set[str] = set()
        delay = 0.5
        while True:
            task = await self.get_task()
            if not task:
                raise RuntimeError(f"Service {self.service_name} has no task")
            status = task["Status"]
            state = status["State"].lower()
            if state == "running":
                return
            reason = status.get("Err") or status.get("Message") or state
            if state in TASK_FAILED:
                raise RuntimeError(f"Your server could not start on the Swarm: {reason}")
            if status.get("Err") and reason not in told:
                told.add(reason)
                hint = ""
                if "constraint" in reason and self.extra_placement_spec.get("constraints"):
                    hint = (f" (GPU servers run only on nodes labelled {labels.NODE_GPU_FLAG}=true: "
                            "`d2lhub nodes add HOST --gpus IDS`)")
                self._events.append(f"Waiting for a node that can run your server: {reason}{hint}")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 5)

    async def _why_stopped(self) -> str | None:
        task = await self.get_task()
        status = (task or {}).get("Status", {})
        if status.get("State") == "running":
            return None
        return f"its Swarm task is {status.get('State', 'gone')}: {status.get('Err') or status.get('Message') or 'no reason given'}"

    async def get_ip_and_port(self):
        """The address of the node running the task and the port it published there."""
        task = await self.get_task()
        ports = (task or {}).get("Status", {}).get("PortStatus", {}).get("Ports") or []
        published = next((p["PublishedPort"] for p in ports if p.get("TargetPort") == self.port), None)
        if published is None:
            raise RuntimeError(f"service {self.service_name} published no port for {self.port}")
        node = await self.docker("inspect_node", task["NodeID"])
        return engine.node_address(node), published
