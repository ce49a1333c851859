"""The classroom's DockerSpawner: one container per student, their own uid and volume.

Why a subclass rather than plain settings:
- each student runs as a uid of their own, handed out once per name by the classroom's
  registry (d2lhub.identity), so files in shared volumes (the exchange) carry real
  identities that survive a deleted account or a rebuilt hub database; their home volume
  is made theirs when it is created, and put right if it belongs to another uid
  (d2lhub.hub.homes);
- Docker calls go through a bounded pool instead of DockerSpawner's single
  thread, so a class signing in at once is not served one student at a time
  (and their one client is made under a lock, `client`);
- limits come from the chosen profile, and the spawn page says what happens;
- GPUs are handed out by explicit device id (d2lhub.hub.gpus), since Docker's
  `count=1` would give every student the same first GPU.

All of that lives in `ClassroomMixin`; `ClassroomSpawner` (one Docker host, containers)
and `ClassroomSwarmSpawner` (a Swarm, one service per student) add only how their kind of
object is described: `spawner.kind` in classroom.yaml picks one.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker.errors
import requests.exceptions
from docker.types import DeviceRequest
from dockerspawner import DockerSpawner
from tornado import web
from traitlets import Any, Dict, Unicode, default
from traitlets.config import LoggingConfigurable

from d2lhub import diskspace, homefs, labels
from d2lhub.config import Profile
from d2lhub.grading import layout
from d2lhub.hub import chapters, firewall, gpus, homes, profileform, readiness
from d2lhub.hub.facts import firewall_inputs
from d2lhub.studentimage import DATA_MOUNT, HOME, STUDENT_GID

LIVE_STATES = {"created", "running", "restarting", "paused"}
# What docker-py raises when no engine answers on its socket (stopped, restarting, hung).
ENGINE_DOWN = (requests.exceptions.ConnectionError, requests.exceptions.Timeout)
ENGINE_DOWN_MESSAGE = (
    "The Docker engine does not answer, so no server can start right now (your files are safe). "
    "Try again in a minute; if this persists, tell the course admin."
)


class EngineDown(web.HTTPError):
    """A spawn with no engine: a 503 whose message JupyterHub shows on every path (the spawn page itself when
    the spawn fails within its first second, as it does while the engine's socket is gone; the progress bar after)."""

    def __init__(self):
        super().__init__(503, ENGINE_DOWN_MESSAGE)
        self.jupyterhub_message = ENGINE_DOWN_MESSAGE


class ClassroomMixin(LoggingConfigurable):
    """What every classroom server gets, whichever kind of Docker object runs it.

    Configured as `c.ClassroomMixin` (d2lhub.hub.traits), which both spawner classes read.
    """

    classroom = Any(help="the validated classroom.yaml (d2lhub.config.Classroom)").tag(config=True)
    course_dir = Unicode(help="host folder of the built course (or courses), mounted read-only").tag(config=True)
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

    _client_lock = threading.Lock()

    @property
    def client(self):
        """The hub's one Docker client, made once under a lock: DockerSpawner makes it in whichever thread asks
        first, so several Docker threads each made one at a hub start, and replacing the first freed it while
        another thread read it (python/cpython#118492): a segfault at start (issue 16, test_hub_starts)."""
        with ClassroomMixin._client_lock:
            return super().client

    _uid: int | None = None

    @property
    def uid(self) -> int:
        """The student's uid from the classroom's registry (found at each start, see `_identify`)."""
        if self._uid is None:
            self._uid = self._identify()
        return self._uid

    def _identify(self) -> int:
        return homes.student_uid(self.client, self.classroom, self.home_volume, self.user.name)

    @property
    def home_volume(self) -> str:
        return f"{self.classroom.spawner.instance}-home-{self.escaped_name}"

    # Profiles -------------------------------------------------------------

    def allowed_profiles(self) -> list[Profile]:
        return profileform.allowed(self.classroom, self.hub_groups())

    @default("options_form")
    def _profile_picker(self) -> str:
        """A `@default`, so it replaces DockerSpawner's own default, an image picker."""
        return profileform.picker(self.classroom, self.allowed_profiles())

    def options_from_form(self, formdata: dict) -> dict:
        """What the spawn form posted; a profile not offered to this student is refused here,
        so the form comes back with the reason instead of a failed spawn."""
        chosen = formdata.get("profile", [""])[0]
        if chosen:
            self.profile_named(chosen)
        return {"profile": chosen} if chosen else {}

    def profile_named(self, name: str) -> Profile:
        return profileform.named(self.classroom, self.allowed_profiles(), self.user.name, name)

    def chosen_profile(self) -> Profile:
        allowed = self.allowed_profiles()
        if not allowed:
            raise ValueError(f"no profile in classroom.yaml allows user {self.user.name}")
        name = self.user_options.get("profile")
        return self.profile_named(name) if name else allowed[0]

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
        for server_labels in self._live_labels():
            assignment = gpus.Assignment.from_labels(server_labels)
            if assignment and labels.SERVER in server_labels:
                live[server_labels[labels.SERVER]] = assignment
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

    _home_limit: int | None = None

    def _prepare_home(self) -> str:
        """Create the student's home volume, theirs and limited, or put it right (d2lhub.hub.homes); what was done."""
        return homes.prepare(self.client, self.classroom, self.home_volume, self.user.name, self.uid, self.image,
                             self._home_limit)

    _extra_env: dict[str, str] = {}

    def get_env(self) -> dict:
        env = super().get_env()
        env.update(self._extra_env)
        if self.is_grader():
            env["D2LHUB_GRADER"] = "1"  # the start script turns the formgrader on (images/student/grader-jupyter)
        return env

    def is_grader(self) -> bool:
        """Grades an offering (d2lhub.courses): their server gets its course folder and the formgrader."""
        return bool(layout.server_offerings(self.classroom, self.hub_groups())[1])

    def hub_groups(self) -> set[str]:
        return {group.name for group in self.user.groups}

    def courses_seen(self):
        return chapters.courses_seen(self.classroom, self.hub_groups(), self.user.admin)

    def _apply_profile(self, profile: Profile, assignment: gpus.Assignment | None = None) -> None:
        limits = self.classroom.limits_for(profile)
        self._home_limit = homefs.limit_for(self.classroom, self.user.name, profile)
        self.image = self.images.get(profile.image, self.image)
        self.mem_limit = limits.memory
        self.cpu_limit = limits.cpu
        grader = self.is_grader()
        self.volumes = {self.home_volume: HOME, **layout.student_mounts(self.classroom, self.uid, self.user.name, self.hub_groups())}
        self.read_only_volumes = {labels.data_volume(self.classroom.spawner.instance): DATA_MOUNT}
        self.read_only_volumes.update(chapters.course_mounts(self.classroom, self.course_dir, self.courses_seen()))
        server_labels = {
            labels.INSTANCE: self.classroom.spawner.instance,
            labels.USER: self.user.name,
            labels.PROFILE: profile.name,
            labels.SERVER: self.holder,
            **(assignment.labels() if assignment else {}),
        }
        groups = [str(layout.graders_gid(self.classroom))] if grader else []
        self._describe_server(limits, server_labels, groups, assignment)

    def _describe_server(self, limits, server_labels: dict, groups: list[str], assignment: gpus.Assignment | None) -> None:
        """Put uid, labels, limits, hardening and GPUs into this kind's object description."""
        raise NotImplementedError

    async def _started(self, assignment: gpus.Assignment | None):
        """The kind's own start, with its failures told in words a student can act on."""
        return await super().start()

    def _ensure_firewall(self) -> bool:
        """Put the bridge's packet rules back if they went (a restarted engine, a flushed table)."""
        if not self.classroom.spawner.firewall:
            return False
        network = self.client.inspect_network(self.network_name)
        return firewall.ensure(**firewall_inputs(self.classroom, network["Id"]))

    async def start(self):
        try:
            return await self._start()
        except ENGINE_DOWN as error:
            self.log.error("Docker engine unreachable while starting %s: %s", self._log_name, error)
            raise EngineDown() from error

    async def _start(self):
        self._events = []
        try:
            diskspace.check(self.classroom)
        except diskspace.DiskFull:  # a student reads the short form; the admin's commands give the figures
            raise RuntimeError(diskspace.full_message(self.classroom.hub.state_dir)) from None
        if await asyncio.wrap_future(self.executor.submit(self._ensure_firewall)):
            self.log.warning("the firewall rules of %s were missing: re-applied", self.classroom.spawner.instance)
        self._uid = await asyncio.wrap_future(self.executor.submit(self._identify))
        profile, assignment = await self._assign_gpus(self.chosen_profile())
        self._apply_profile(profile, assignment)
        self._events.append(f"Server type: {profile.display_name}, image {self.image}")
        if assignment:
            self._events.append(f"Assigned {assignment.describe()}")
        done = await asyncio.wrap_future(self.executor.submit(self._prepare_home))
        if done:
            self._events.append(done)
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
        return chapters.course_message(self.classroom, self.course_dir, self.courses_seen())

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
            for container in self.client.containers(all=True, filters=labels.labelled(instance))
            if container.get("State") in LIVE_STATES
        ]

    def _describe_server(self, limits, server_labels, groups, assignment) -> None:
        self.extra_create_kwargs = {"user": f"{self.uid}:{STUDENT_GID}", "labels": server_labels}
        self.extra_host_config = {
            "pids_limit": limits.pids,
            # Students write only where a limit holds: their home (a qgroup), /tmp (its size), the inbound (a qgroup).
            "read_only": True,
            "tmpfs": {**layout.EXCHANGE_ROOT_TMPFS, "/tmp": f"size={limits.tmp},mode=1777"},
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
