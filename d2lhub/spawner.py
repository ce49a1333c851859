"""The classroom's DockerSpawner: one container per student, their own uid and volume.

Why a subclass rather than plain settings:
- each student runs as a uid of their own (uid_base + hub user id), so files in
  shared volumes (the exchange) carry real identities; their home volume is made
  theirs once, by a throwaway root container, when it is first created;
- Docker calls go through a bounded pool instead of DockerSpawner's single
  thread, so a class signing in at once is not served one student at a time;
- limits come from the chosen profile, and the spawn page says what happens;
- GPUs are handed out by explicit device id (d2lhub.gpus), since Docker's
  `count=1` would give every student the same first GPU.

All of that lives in `ClassroomMixin`; `ClassroomSpawner` (one Docker host, containers)
and `ClassroomSwarmSpawner` (a Swarm, one service per student) add only how their kind of
object is described: `spawner.kind` in classroom.yaml picks one.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from html import escape
from pathlib import Path

import docker.errors
import requests.exceptions
from docker.types import DeviceRequest, DriverConfig, Mount, RestartPolicy
from dockerspawner import DockerSpawner, SwarmSpawner
from traitlets import Any, Dict, Unicode
from traitlets.config import LoggingConfigurable

from d2lhub import diskspace, firewall, gpus, grading, nodes, readiness
from d2lhub.bootstrap import LABEL, labelled
from d2lhub.config import Classroom, Profile
from d2lhub.content import MANIFEST_NAME, CourseError, CourseManifest

HOME = "/home/jovyan"
COURSE_MOUNT = "/srv/d2l/course"
DATA_MOUNT = "/srv/d2l/data"  # the class's data cache, read-only; the image's MXNET_HOME lies under it
STUDENT_GID = 100  # "users": shared by students so group-readable course files work
SERVER_LABEL = "org.d2lhub.server"  # user or user/server: who a container's GPUs belong to
LIVE_STATES = {"created", "running", "restarting", "paused"}
# What docker-py raises when no engine answers on its socket (stopped, restarting, hung).
ENGINE_DOWN = (requests.exceptions.ConnectionError, requests.exceptions.Timeout)
ENGINE_DOWN_MESSAGE = (
    "The Docker engine does not answer, so no server can start right now (your files are safe). "
    "Try again in a minute; if this persists, tell the course admin."
)


def data_volume(classroom: Classroom) -> str:
    """The one volume holding the data sets every student reads (`d2lhub course data` fills it)."""
    return f"{classroom.spawner.instance}-data"


def volume_driver(classroom: Classroom, name: str) -> tuple[str, dict[str, str]]:
    """The driver and options of a home or data volume ({volume} in an option becomes its name)."""
    settings = classroom.spawner
    return settings.volume_driver, {k: v.replace("{volume}", name) for k, v in settings.volume_options.items()}


def ensure_data_volume(client, classroom: Classroom) -> str:
    """Create the data volume empty and labelled if missing, so a server never mounts an unlabelled one."""
    name = data_volume(classroom)
    try:
        client.volumes.get(name)
    except docker.errors.NotFound:
        driver, options = volume_driver(classroom, name)
        client.volumes.create(
            name, driver=driver, driver_opts=options or None,
            labels={LABEL: classroom.spawner.instance, "org.d2lhub.role": "data"},
        )
    return name


class ClassroomMixin(LoggingConfigurable):
    """What every classroom server gets, whichever kind of Docker object runs it.

    Configured as `c.ClassroomMixin` (hubconfig), which both spawner classes read.
    """

    classroom = Any(help="the validated classroom.yaml (d2lhub.config.Classroom)").tag(config=True)
    course_dir = Unicode(help="host folder of the built course, mounted read-only").tag(config=True)
    images = Dict(help="student image key (student, student_gpu) -> the tag to run").tag(config=True)
    gpu_state_file = Unicode(help="where GPU assignments persist across hub restarts").tag(config=True)

    _pool: ThreadPoolExecutor | None = None
    _allocator: gpus.Allocator | None = None
    _queue: gpus.Queue | None = None
    _reconciled: asyncio.Lock | None = None

    @classmethod
    def reset_shared_state(cls) -> None:
        """Forget the hub-wide allocator, queue and reconcile (tests that play a hub restart)."""
        ClassroomMixin._allocator = ClassroomMixin._queue = ClassroomMixin._reconciled = None

    @property
    def executor(self) -> ThreadPoolExecutor:
        cls = ClassroomMixin
        if cls._pool is None:
            cls._pool = ThreadPoolExecutor(self.classroom.spawner.docker_workers, thread_name_prefix="docker")
        return cls._pool

    @property
    def uid(self) -> int:
        return self.classroom.spawner.uid_base + self.user.id

    @property
    def home_volume(self) -> str:
        return f"{self.classroom.spawner.instance}-home-{self.escaped_name}"

    # Profiles -------------------------------------------------------------

    def allowed_profiles(self) -> list[Profile]:
        groups = {group.name for group in self.user.groups}
        return [p for p in self.classroom.profiles if not p.groups or groups.intersection(p.groups)]

    def _default_options_form(self) -> str:  # DockerSpawner's image picker is replaced by profiles
        profiles = self.allowed_profiles()
        if len(profiles) <= 1:
            return ""
        choices = "\n".join(
            f'<div class="form-check"><input class="form-check-input" type="radio" name="profile" '
            f'id="profile-{p.name}" value="{p.name}"{" checked" if i == 0 else ""}>'
            f'<label class="form-check-label" for="profile-{p.name}">{escape(p.display_name)}</label></div>'
            for i, p in enumerate(profiles)
        )
        return f"<fieldset><legend>Choose your server</legend>{choices}</fieldset>"

    def options_from_form(self, formdata: dict) -> dict:
        chosen = formdata.get("profile", [""])[0]
        return {"profile": chosen} if chosen else {}

    def chosen_profile(self) -> Profile:
        allowed = self.allowed_profiles()
        if not allowed:
            raise ValueError(f"no profile in classroom.yaml allows user {self.user.name}")
        name = self.user_options.get("profile")
        if not name:
            return allowed[0]
        for profile in allowed:
            if profile.name == name:
                return profile
        raise ValueError(f"profile {name!r} is not offered to {self.user.name}")

    # GPUs -----------------------------------------------------------------

    @property
    def holder(self) -> str:
        return f"{self.user.name}/{self.name}" if self.name else self.user.name

    def gpu_hosts(self) -> dict[str, tuple[str, ...]]:
        """GPUs found when classroom.yaml lists none (per kind: NVML here, or the Swarm's node labels)."""
        raise NotImplementedError

    @property
    def allocator(self) -> gpus.Allocator:
        cls = ClassroomMixin
        if cls._allocator is None:
            inventory = gpus.inventory(self.classroom.gpus, {} if self.classroom.gpus.devices else self.gpu_hosts())
            path = Path(self.gpu_state_file) if self.gpu_state_file else None
            cls._allocator = gpus.Allocator(inventory, self.classroom.gpus, path)
        return cls._allocator

    @property
    def gpu_queue(self) -> gpus.Queue:
        cls = ClassroomMixin
        if cls._queue is None or cls._queue.allocator is not self.allocator:
            cls._queue = gpus.Queue(self.allocator)
        return cls._queue

    def _live_labels(self) -> list[dict]:
        """Labels of this hub's live servers (containers or services)."""
        raise NotImplementedError

    def _live_gpu_assignments(self) -> dict[str, gpus.Assignment]:
        """GPUs held by this hub's servers, read from their labels."""
        live = {}
        for labels in self._live_labels():
            assignment = gpus.Assignment.from_labels(labels)
            if assignment and SERVER_LABEL in labels:
                live[labels[SERVER_LABEL]] = assignment
        return live

    async def _reconcile_once(self) -> None:
        """Before this hub process hands out its first GPU, trust the running servers over the file."""
        cls = ClassroomMixin
        if cls._reconciled is None:
            cls._reconciled = asyncio.Lock()
            async with cls._reconciled:
                live = await asyncio.wrap_future(self.executor.submit(self._live_gpu_assignments))
                freed, adopted = self.allocator.reconcile(live)
                if freed or adopted:
                    self.log.info("GPU assignments reconciled: freed %s, adopted %s", freed, adopted)
        async with cls._reconciled:
            pass

    async def _assign_gpus(self, profile: Profile) -> tuple[Profile, gpus.Assignment | None]:
        """The GPUs for this server, or the fallback profile (or a clear refusal) when none is free."""
        if not profile.gpus:
            return profile, None
        await self._reconcile_once()
        settings = self.classroom.gpus
        try:
            if settings.when_full == "queue":
                return profile, await self.gpu_queue.assign(
                    self.holder, profile.gpus, settings.queue_timeout,
                    report=lambda ahead: self._events.append(gpus.waiting_message(ahead)),
                )
            return profile, self.allocator.assign(self.holder, profile.gpus)
        except gpus.NoGpuFree as full:
            if settings.when_full != "cpu":
                raise
            fallback = self.classroom.profile(settings.fallback_profile)
            self._events.append(f"{full} Starting {fallback.display_name} instead.")
            return fallback, None

    # Start ----------------------------------------------------------------

    def _prepare_home(self) -> bool:
        """Create the home volume owned by the student; True when it was new.

        The marker folder keeps the volume non-empty: Docker copies the image's (root-owned)
        folder over an empty volume at every mount, which would undo the ownership.
        """
        client = self.client
        try:
            client.inspect_volume(self.home_volume)
            return False
        except docker.errors.NotFound:
            pass
        driver, options = volume_driver(self.classroom, self.home_volume)
        volume = client.create_volume(
            self.home_volume,
            driver=driver,
            driver_opts=options or None,
            # collect checks submissions' owners against this uid: Docker labels are the hub's word, not the student's
            labels={LABEL: self.classroom.spawner.instance, grading.USER_LABEL: self.user.name, grading.UID_LABEL: str(self.uid)},
        )
        if options or not self._own_on_host(Path(volume.get("Mountpoint") or "/nonexistent")):
            self._own_in_container()
        return True

    def _own_on_host(self, mountpoint: Path) -> bool:
        """Fast path when the engine is local and we are root: no extra container per new student."""
        if os.geteuid() != 0 or not mountpoint.is_dir():
            return False
        marker = mountpoint / ".d2lhub"
        marker.mkdir(exist_ok=True)
        for path in (mountpoint, marker):
            os.chown(path, self.uid, STUDENT_GID)
        mountpoint.chmod(0o700)
        return True

    def _own_in_container(self) -> None:
        client = self.client
        container = client.create_container(
            self.image,
            entrypoint=["/bin/sh", "-c"],
            command=[f"mkdir -p {HOME}/.d2lhub && chown -R {self.uid}:{STUDENT_GID} {HOME} && chmod 700 {HOME}"],
            user="0",
            network_disabled=True,
            labels={LABEL: self.classroom.spawner.instance},
            host_config=client.create_host_config(
                binds={self.home_volume: {"bind": HOME, "mode": "rw"}},
                cap_drop=["ALL"],
                cap_add=["CHOWN", "FOWNER"],
                network_mode="none",
            ),
        )
        try:
            client.start(container)
            result = client.wait(container, timeout=60)
            if result.get("StatusCode") != 0:
                raise RuntimeError(f"preparing {self.home_volume} failed: {client.logs(container).decode()[-300:]}")
        finally:
            client.remove_container(container, force=True)

    _extra_env: dict[str, str] = {}

    def get_env(self) -> dict:
        env = super().get_env()
        env.update(self._extra_env)
        if self.is_grader():
            env["D2LHUB_GRADER"] = "1"  # the start script turns the formgrader on (images/student/grader-jupyter)
        return env

    def is_grader(self) -> bool:
        return grading.group_names(self.classroom)["graders"] in {group.name for group in self.user.groups}

    def _apply_profile(self, profile: Profile, assignment: gpus.Assignment | None = None) -> None:
        limits = self.classroom.limits_for(profile)
        self.image = self.images.get(profile.image, self.image)
        self.mem_limit = limits.memory
        self.cpu_limit = limits.cpu
        grader = self.is_grader()
        self.volumes = {self.home_volume: HOME, **grading.student_mounts(self.classroom, self.uid, grader)}
        self.read_only_volumes = {data_volume(self.classroom): DATA_MOUNT}
        if self.course_dir:
            self.read_only_volumes[self.course_dir] = COURSE_MOUNT
        labels = {
            LABEL: self.classroom.spawner.instance,
            "org.d2lhub.user": self.user.name,
            "org.d2lhub.profile": profile.name,
            SERVER_LABEL: self.holder,
            **(assignment.labels() if assignment else {}),
        }
        groups = [str(grading.graders_gid(self.classroom))] if grader else []
        self._describe_server(limits, labels, groups, assignment)

    def _describe_server(self, limits, labels: dict, groups: list[str], assignment: gpus.Assignment | None) -> None:
        """Put uid, labels, limits, hardening and GPUs into this kind's object description."""
        raise NotImplementedError

    async def _started(self, assignment: gpus.Assignment | None):
        """The kind's own start, with its failures told in words a student can act on."""
        return await super().start()

    def _ensure_firewall(self) -> bool:
        """Put the bridge's packet rules back if they went (a restarted engine, a flushed table)."""
        if not self.classroom.spawner.firewall:
            return False
        from d2lhub.hubconfig import firewall_inputs  # hubconfig imports this module

        network = self.client.inspect_network(self.network_name)
        return firewall.ensure(**firewall_inputs(self.classroom, network["Id"]))

    async def start(self):
        try:
            return await self._start()
        except ENGINE_DOWN as error:
            self.log.error("Docker engine unreachable while starting %s: %s", self._log_name, error)
            raise RuntimeError(ENGINE_DOWN_MESSAGE) from error

    async def _start(self):
        self._events = []
        try:
            diskspace.check(self.classroom)
        except diskspace.DiskFull:  # a student reads the short form; the admin's commands give the figures
            raise RuntimeError(diskspace.full_message(self.classroom.hub.state_dir)) from None
        if await asyncio.wrap_future(self.executor.submit(self._ensure_firewall)):
            self.log.warning("the firewall rules of %s were missing: re-applied", self.classroom.spawner.instance)
        profile, assignment = await self._assign_gpus(self.chosen_profile())
        self._apply_profile(profile, assignment)
        self._events.append(f"Server type: {profile.display_name}, image {self.image}")
        if assignment:
            self._events.append(f"Assigned {assignment.describe()}")
        new = await asyncio.wrap_future(self.executor.submit(self._prepare_home))
        if new:
            self._events.append("Created your home volume")
        self._events.append(self.course_message())
        started = await self._started(assignment)
        self._events.append(f"{self.object_type.title()} started; waiting for JupyterLab to answer")
        ip, port = started
        try:
            waited = await readiness.wait_until_listening(ip, port, self._why_stopped, timeout=self.http_timeout)
        except (readiness.ServerDied, TimeoutError) as failure:
            raise RuntimeError(f"Your server could not start: {failure}") from failure
        self.log.info("%s listening %.2f s after its %s started", self.holder, waited, self.object_type)
        return started

    async def _why_stopped(self) -> str | None:
        """None while the server's container runs; else why it stopped, in words a student can pass on."""
        raise NotImplementedError

    def course_message(self) -> str:
        """What the start script will do with ~/d2l, told from the hub's copy of the course manifest."""
        try:
            chapters = len(CourseManifest.load(Path(self.course_dir) / MANIFEST_NAME).chapters)
        except CourseError:
            return "Starting your container (no course is built yet: ~/d2l stays as it is)"
        return f"Starting your container; {chapters} chapters sync into ~/d2l (chapters you edited are kept)"

    async def poll(self):
        """While the engine is unreachable a server's fate is unknown: keep it, and look again next
        poll (after the engine is back, a server it stopped is found gone and the student may start again)."""
        try:
            return await super().poll()
        except ENGINE_DOWN as error:
            self.log.warning("cannot poll %s, the Docker engine does not answer: %s", self._log_name, error)
            return None

    async def stop(self, now=False):
        await super().stop(now=now)
        released = self.allocator.release(self.holder)
        if released:
            self.log.info("%s released %s", self.holder, released.describe())

    async def progress(self):
        sent = 0
        while True:
            events = getattr(self, "_events", [])
            while sent < len(events):
                yield {"progress": min(90, 20 + 10 * sent), "message": events[sent]}
                sent += 1
            await asyncio.sleep(0.5)


class ClassroomSpawner(ClassroomMixin, DockerSpawner):
    """One container per student on this host's Docker engine (`spawner.kind: docker`)."""

    def gpu_hosts(self) -> dict[str, tuple[str, ...]]:
        return {gpus.LOCAL: gpus.discover_local()}

    def _live_labels(self) -> list[dict]:
        instance = self.classroom.spawner.instance
        return [
            container.get("Labels") or {}
            for container in self.client.containers(all=True, filters=labelled(instance))
            if container.get("State") in LIVE_STATES
        ]

    def _describe_server(self, limits, labels, groups, assignment) -> None:
        self.extra_create_kwargs = {"user": f"{self.uid}:{STUDENT_GID}", "labels": labels}
        self.extra_host_config = {
            "pids_limit": limits.pids,
            "tmpfs": grading.EXCHANGE_ROOT_TMPFS,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "init": False,  # tini is the image's entrypoint
            "group_add": groups,
            # A server that dies while starting stays until the hub removes it, so its exit code and log
            # can be told to the student; DockerSpawner still removes it at stop and before a restart.
            "auto_remove": False,
        }
        if assignment:
            self.extra_host_config["device_requests"] = [
                DeviceRequest(device_ids=list(assignment.ids), capabilities=[["gpu"]])
            ]

    async def _started(self, assignment):
        try:
            return await super()._started(assignment)
        except docker.errors.APIError as error:
            if assignment and "could not select device driver" in str(error):
                raise RuntimeError(
                    "This Docker host cannot give containers GPUs: install the NVIDIA driver and "
                    "nvidia-container-toolkit there (docs/admin.md, Adding a GPU node)."
                ) from error
            raise

    async def _why_stopped(self) -> str | None:
        state = (await self.docker("inspect_container", self.container_id))["State"]
        if state.get("Running"):
            return None
        logs = (await self.docker("logs", self.container_id, tail=4)).decode(errors="replace").strip()
        why = "it ran out of memory" if state.get("OOMKilled") else f"it exited with code {state.get('ExitCode')}"
        return f"{why}. Last lines of its log: {logs[-600:] or '(empty)'}"


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


class ClassroomSwarmSpawner(ClassroomMixin, SwarmSpawner):
    """One Swarm service per student (`spawner.kind: swarm`), so servers run on any node.

    The task publishes JupyterLab's port in host mode on whichever node runs it; the hub
    reaches it at that node's address. Images are given by ID, so no node asks a registry.
    GPU profiles are placed on nodes labelled `org.d2lhub.gpu=true`, on the node whose
    GPUs the allocator chose, and get them through NVIDIA_VISIBLE_DEVICES (Swarm services
    cannot carry device requests; GPU nodes use the nvidia runtime by default).
    """

    def gpu_hosts(self) -> dict[str, tuple[str, ...]]:
        found = (nodes.Node.from_swarm(attrs) for attrs in self.client.nodes())
        return {node.hostname: node.gpus for node in found if node.gpus}

    def _live_labels(self) -> list[dict]:
        instance = self.classroom.spawner.instance
        return [service["Spec"].get("Labels") or {} for service in self.client.services(filters=labelled(instance))]

    @property
    def mounts(self) -> list[Mount]:
        """Named volumes (home, data) with this classroom's driver; host paths (course, exchange) as binds."""
        found = []
        for source, bind in self.volume_binds.items():
            read_only = bind["mode"] == "ro"
            if source.startswith("/"):
                found.append(Mount(bind["bind"], source, type="bind", read_only=read_only))
                continue
            driver, options = volume_driver(self.classroom, source)
            config = DriverConfig(driver, options) if options or driver != "local" else None
            found.append(
                Mount(bind["bind"], source, type="volume", read_only=read_only, driver_config=config,
                      labels={LABEL: self.classroom.spawner.instance})
            )
        return found + tmpfs_mounts(grading.EXCHANGE_ROOT_TMPFS)

    def _describe_server(self, limits, labels, groups, assignment) -> None:
        self.extra_create_kwargs = {"labels": labels}
        self.extra_container_spec = {
            "user": f"{self.uid}:{STUDENT_GID}",
            "labels": labels,
            "cap_drop": ["ALL"],
            "init": False,  # tini is the image's entrypoint
            "groups": groups,
        }
        self._extra_env = {"NVIDIA_VISIBLE_DEVICES": ",".join(assignment.ids)} if assignment else {}
        self._pids = limits.pids
        constraints = []
        if assignment:
            constraints = [f"node.labels.{nodes.GPU_FLAG_LABEL}==true", f"node.hostname=={assignment.host}"]
        self.extra_placement_spec = {"constraints": constraints}
        self.extra_task_spec = {"restart_policy": RestartPolicy(condition="none")}  # a dead server is the hub's to notice
        self.extra_endpoint_spec = {"ports": [{"Protocol": "tcp", "TargetPort": self.port, "PublishMode": "host"}]}

    def _docker(self, method, *args, **kwargs):
        if method == "create_service":
            # pids is not among docker-py's Resources arguments; the Swarm API (1.41+) takes Limits.Pids
            kwargs["task_template"].setdefault("Resources", {}).setdefault("Limits", {})["Pids"] = self._pids
        return super()._docker(method, *args, **kwargs)

    async def _started(self, assignment):
        # By ID, so the engine never asks a registry for the tag (there is none in a classroom).
        self.image = (await self.docker("inspect_image", self.image))["Id"]
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
                    hint = (f" (GPU servers run only on nodes labelled {nodes.GPU_FLAG_LABEL}=true: "
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
        return nodes.node_address(node), published
