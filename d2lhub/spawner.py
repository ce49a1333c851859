"""The classroom's DockerSpawner: one container per student, their own uid and volume.

Why a subclass rather than plain settings:
- each student runs as a uid of their own (uid_base + hub user id), so files in
  shared volumes (the exchange) carry real identities; their home volume is made
  theirs once, by a throwaway root container, when it is first created;
- Docker calls go through a bounded pool instead of DockerSpawner's single
  thread, so a class signing in at once is not served one student at a time;
- limits come from the chosen profile, and the spawn page says what happens.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from html import escape

import docker.errors
from dockerspawner import DockerSpawner
from traitlets import Any, Unicode

from d2lhub import grading
from d2lhub.bootstrap import LABEL
from d2lhub.config import Classroom, Profile

HOME = "/home/jovyan"
COURSE_MOUNT = "/srv/d2l/course"
STUDENT_GID = 100  # "users": shared by students so group-readable course files work


class ClassroomSpawner(DockerSpawner):
    classroom = Any(help="the validated classroom.yaml (d2lhub.config.Classroom)").tag(config=True)
    course_dir = Unicode(help="host folder of the built course, mounted read-only").tag(config=True)

    _pool: ThreadPoolExecutor | None = None

    @property
    def executor(self) -> ThreadPoolExecutor:
        cls = ClassroomSpawner
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

    # Start ----------------------------------------------------------------

    def _prepare_home(self) -> bool:
        """Create the home volume owned by the student; True when it was new."""
        client = self.client
        try:
            client.inspect_volume(self.home_volume)
            return False
        except docker.errors.NotFound:
            pass
        client.create_volume(
            self.home_volume,
            # collect checks submissions' owners against this uid: Docker labels are the hub's word, not the student's
            labels={LABEL: self.classroom.spawner.instance, grading.USER_LABEL: self.user.name, grading.UID_LABEL: str(self.uid)},
        )
        container = client.create_container(
            self.image,
            entrypoint=["/bin/sh", "-c"],
            # The marker keeps the volume non-empty: Docker re-copies the image's (root-owned)
            # folder over an empty volume at every mount, undoing the chown.
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
        return True

    def _apply_profile(self, profile: Profile) -> None:
        limits = self.classroom.limits_for(profile)
        self.mem_limit = limits.memory
        self.cpu_limit = limits.cpu
        instance = self.classroom.spawner.instance
        self.volumes = {self.home_volume: HOME, **grading.student_mounts(self.classroom, self.uid)}
        self.read_only_volumes = {self.course_dir: COURSE_MOUNT} if self.course_dir else {}
        self.extra_create_kwargs = {
            "user": f"{self.uid}:{STUDENT_GID}",
            "labels": {
                LABEL: instance,
                "org.d2lhub.user": self.user.name,
                "org.d2lhub.profile": profile.name,
            },
        }
        self.extra_host_config = {
            "pids_limit": limits.pids,
            "tmpfs": grading.EXCHANGE_ROOT_TMPFS,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "init": False,  # tini is the image's entrypoint
        }

    async def start(self):
        profile = self.chosen_profile()
        self._apply_profile(profile)
        self._events = [f"Server type: {profile.display_name}"]
        new = await asyncio.wrap_future(self.executor.submit(self._prepare_home))
        if new:
            self._events.append("Created your home volume")
        self._events.append("Starting your container; your chapters sync into ~/d2l")
        return await super().start()

    async def progress(self):
        sent = 0
        while True:
            events = getattr(self, "_events", [])
            while sent < len(events):
                yield {"progress": min(90, 20 + 20 * sent), "message": events[sent]}
                sent += 1
            await asyncio.sleep(0.5)
