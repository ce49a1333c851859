"""The `classroom.yaml` schema: the single source of truth an admin edits.

Every model forbids unknown keys so a typo stops start-up instead of being
silently ignored; `load` turns pydantic's errors into one line per problem
naming the key path (d2lhub.configfile), which is what an admin needs to fix the
file. Each field's `description` is what docs/admin.md says about its key
(`make docs` writes it there through d2lhub.cli.reference).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

# ConfigError is raised by load, so callers import it from here with the rest
from d2lhub.authconfig import NAME_PATTERN, Account, Auth  # noqa: F401 (the auth: section)
from d2lhub.configfile import ConfigError, describe, read_mapping, repeated
from d2lhub.courses import Course, Offering, check_courses, check_sign_in, offerings
from d2lhub.deadlines_config import known_zone
from d2lhub.limits import (
    Grading,
    Limits,
    Strict,
    home_default_off_this_host,
    homes_here,
)
from d2lhub.network import Network
from d2lhub.sizes import ByteSize, parse_size
from d2lhub.spawnerconfig import Spawner


class Https(Strict):
    cert_file: Path = Field(description="the certificate (PEM, with its chain)")
    key_file: Path = Field(description="its private key (PEM)")


class Hub(Strict):
    ip: str = Field("127.0.0.1", description="the address people reach the hub (the proxy) at")
    port: int = Field(8000, ge=1, le=65535, description="the port people reach; `port+1` is the proxy's API, "
                      "`port+81` the hub's, `port+82` the students' egress proxy")
    state_dir: Path = Field(Path(".d2lhub"), description="database, secrets, generated passwords, built "
                            "course, logs: back it up")
    db_url: str | None = Field(None, description="a PostgreSQL URL for production; SQLite in state_dir when unset")
    concurrent_spawn_limit: int = Field(200, ge=1, description="servers starting at once; more wait their turn")
    start_timeout: int = Field(180, ge=10, description="seconds a server may take to answer before the spawn "
                               "fails; one whose container dies fails at once, with its exit code and last log lines")
    min_free_space: ByteSize = Field(
        parse_size("64M"), description="below this much free in state_dir, `d2lhub` commands that write "
        "(`up`, `roster import`, `assignment ...`, `course build`, `restore`) and spawns refuse, naming the folder"
    )
    https: Https | None = Field(None, description="serve HTTPS with this certificate; unset: plain HTTP")
    homes_size: ByteSize = Field(
        parse_size("20G"), description="size of the btrfs file system holding students' homes and the "
        "submissions (`state_dir/homes`): made in a sparse file `state_dir/homes.btrfs` unless a btrfs is "
        "mounted there; it must fit in the free space of state_dir's disk"
    )


class Image(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._/-]*$", description="repository; the tag is a hash of the inputs")
    context: Path = Field(description="build folder holding the Dockerfile and its lock file")


class Images(Strict):
    base: str = Field("debian:bookworm-slim", description="base image every student image builds FROM")
    base_source: Literal["debootstrap", "pull"] = Field(
        "debootstrap", description="how to get `base` when the engine lacks it: build from Debian packages, or pull"
    )
    extra_ca_certs: Path | None = Field(
        Path("/usr/local/share/ca-certificates"), description="folder of `*.crt` files trusted inside image builds "
        "(TLS-intercepting networks)"
    )
    student: Image = Field(Image(name="d2lhub/student", context=Path("images/student")),
                           description="the image of every profile with `image: student`")
    student_gpu: Image = Field(
        Image(name="d2lhub/student-gpu", context=Path("images/student-gpu")),
        description="the GPU variant: images/student's Dockerfile with this folder's lock; built only when a profile uses it",
    )


class Profile(Strict):
    name: str = Field(pattern=NAME_PATTERN, description="the profile's id: lower case letters, digits, - and _")
    display_name: str = Field(description="what students see on the spawn page, e.g. `CPU (1 core, 3 GB)`")
    image: Literal["student", "student_gpu"] = Field("student", description="which of `images` it runs")
    gpus: int = Field(0, ge=0, le=16, description="GPUs each student of this profile gets")
    limits: Limits | None = Field(None, description="overrides the classroom's default limits")
    groups: tuple[str, ...] = Field((), description="groups allowed to choose it; empty means everyone")

    @model_validator(mode="after")
    def gpu_needs_gpu_image(self) -> Profile:
        if self.gpus and self.image != "student_gpu":
            raise ValueError(f"profile {self.name!r} has gpus: {self.gpus} but image: {self.image}; use image: student_gpu")
        return self


class Gpus(Strict):
    """The GPU inventory and how it is shared; d2lhub.hub.gpus enforces it."""

    policy: Literal["exclusive", "shared", "none"] = Field(
        "exclusive", description="exclusive: one student per GPU; shared: up to per_gpu students; none: no GPUs"
    )
    per_gpu: int = Field(2, ge=1, description="students per GPU under policy: shared")
    devices: dict[str, tuple[str, ...]] = Field(
        {}, description="host -> GPU ids (index or UUID); empty: ask NVML (docker) or node labels (swarm)"
    )
    when_full: Literal["refuse", "cpu", "queue"] = Field(
        "refuse",
        description="no GPU free: refuse the spawn with a message, start the fallback profile instead, "
        "or queue (the spawn waits, first come first served, up to queue_timeout)",
    )
    fallback_profile: str = Field("cpu", description="the profile used when when_full: cpu")
    reserve_nodes: bool = Field(
        False,
        description="swarm: keep nodes labelled org.d2lhub.gpu=true for GPU profiles (CPU servers go elsewhere); "
        "leave false where a GPU node is the only node",
    )
    queue_timeout: int = Field(
        120, ge=1, description="seconds a queued spawn waits for a GPU (when_full: queue); below hub.start_timeout"
    )

    @property
    def students_per_gpu(self) -> int:
        """Students one GPU serves at once under the policy: the allocator and the capacity report agree on it."""
        return {"exclusive": 1, "shared": self.per_gpu, "none": 0}[self.policy]


class Culling(Strict):
    enabled: bool = Field(True, description="stop idle servers at all")
    timeout: int = Field(3600, ge=60, description="seconds of inactivity before a server is stopped")
    every: int = Field(300, ge=10, description="seconds between two looks for idle servers")


class Prestart(Strict):
    """Lectures the hub starts the class's servers for, a few minutes early (see d2lhub/ops/prestart.py)."""

    schedule: tuple[str, ...] = Field(
        (),
        description="cron lines (minute hour day-of-month month day-of-week, an optional sixth field for "
        "seconds), in `timezone`: when to start the servers, e.g. `50 8 * * mon,wed` for 9:00 lectures",
    )
    timezone: str | None = Field(None, description="the IANA zone the schedule is read in (daylight saving "
                                 "included), e.g. Europe/Berlin; default: `course.timezone`")
    group: str | None = Field(None, description="whose servers (default: the students of every course and section)")
    parallel: int = Field(0, ge=0, description="servers starting at once (0: one per core)")
    notebook: str | None = Field(
        None,
        pattern=r"^[^/].*\.ipynb$",
        description="the lecture's notebook, relative to the students' home (e.g. "
        "d2l/chapter_preliminaries/ndarray.ipynb): its kernel is started and warmed in each server, "
        "so opening it in JupyterLab finds the kernel ready",
    )
    warm_up: str = Field("import mxnet", description="code that kernel runs silently first (not in its history)")

    @field_validator("schedule")
    @classmethod
    def cron_lines(cls, lines: tuple[str, ...]) -> tuple[str, ...]:
        from croniter import croniter

        bad = [line for line in lines if not croniter.is_valid(line)]
        if bad:
            raise ValueError(f"not a cron line: {', '.join(repr(line) for line in bad)} (e.g. '50 8 * * mon,wed')")
        return lines

    @field_validator("timezone")
    @classmethod
    def zone(cls, name: str | None) -> str | None:
        return name and known_zone(name)


class Classroom(Strict):
    course: Course = Field(Course(), description="the course: its name on the hub's pages, its chapters, data and "
                           "exercises; with `courses`, the first of them")
    courses: tuple[Course, ...] = Field(
        (), description="several courses on one hub, each with its own chapters, exercises, roster and graders "
        "(instead of `course`); the first names the hub's pages"
    )
    hub: Hub = Field(Hub(), description="where the hub listens and keeps its state")
    auth: Auth = Field(Auth(), description="who may sign in")
    images: Images = Field(Images(), description="the images students' servers run")
    limits: Limits = Field(Limits(), description="what each student server may use, unless its profile says otherwise")
    profiles: tuple[Profile, ...] = Field(
        (Profile(name="cpu", display_name="CPU"),),
        description="the server types on the spawn page (the first one a student may choose is preselected); "
        "at least one",
    )
    culling: Culling = Field(Culling(), description="stopping servers nobody uses")
    prestart: Prestart = Field(Prestart(), description="starting the class's servers before each lecture")
    spawner: Spawner = Field(Spawner(), description="how and where students' servers run")
    gpus: Gpus = Field(Gpus(), description="the GPUs and how they are shared")
    grading: Grading = Field(Grading(), description="caps of the containers that autograde submissions")
    network: Network = Field(Network(), description="what students' servers may reach outside the classroom")

    @model_validator(mode="before")
    @classmethod
    def defaults_off_this_host(cls, data: object) -> object:
        """Where servers run on other hosts (a Swarm), the limits kept on the hub's host are off unless written."""
        data = home_default_off_this_host(data)
        if isinstance(data, dict) and data.get("courses"):
            if "course" in data:
                raise ValueError("give `course` (one course) or `courses` (several), not both")
            courses = data["courses"]
            data = {**data, "course": courses[0] if isinstance(courses, (list, tuple)) else courses}
        spawner = data.get("spawner") if isinstance(data, dict) else None
        if isinstance(spawner, dict) and spawner.get("kind") == "swarm":
            network = data.get("network") if isinstance(data.get("network"), dict) else {}
            data = {**data, "network": {"egress": "open", **network}}
        return data

    @model_validator(mode="after")
    def profiles_unique(self) -> Classroom:
        names = [p.name for p in self.profiles]
        if not names:
            raise ValueError("profiles: at least one profile is needed")
        duplicates = repeated(names)
        if duplicates:
            raise ValueError(f"profiles: {', '.join(duplicates)} listed twice")
        gpu_profiles = [p.name for p in self.profiles if p.gpus]
        if gpu_profiles and self.gpus.policy == "none":
            raise ValueError(f"profiles {', '.join(gpu_profiles)} ask for GPUs but gpus.policy is none")
        if gpu_profiles and self.gpus.when_full == "cpu":
            fallback = next((p for p in self.profiles if p.name == self.gpus.fallback_profile), None)
            if fallback is None or fallback.gpus:
                raise ValueError(f"gpus.fallback_profile: {self.gpus.fallback_profile!r} is not a profile without GPUs")
        homes = [p.name for p in self.profiles if self.limits_for(p).home]
        if homes and not homes_here(self.spawner.kind, self.spawner.volume_driver, self.spawner.volume_options):
            raise ValueError(
                f"limits.home: a home limit (profiles {', '.join(homes)}) needs spawner.kind: docker, "
                "spawner.volume_driver: local and no volume_options (homes on this host's btrfs); set limits.home: null"
            )
        if self.grading.max_submission > self.grading.inbound_size:
            raise ValueError("grading.max_submission is larger than grading.inbound_size")
        if gpu_profiles and self.gpus.when_full == "queue" and self.gpus.queue_timeout > self.hub.start_timeout - 10:
            raise ValueError(
                f"gpus.queue_timeout: {self.gpus.queue_timeout} leaves the server no time to start; "
                f"keep it at least 10 below hub.start_timeout ({self.hub.start_timeout})"
            )
        return self

    @model_validator(mode="after")
    def enrolments(self) -> Classroom:
        check_courses(self.all_courses, self.auth.accounts)
        check_sign_in(self.all_courses, self.auth)
        return self

    @property
    def all_courses(self) -> tuple[Course, ...]:
        return self.courses or (self.course,)

    @property
    def offerings(self) -> tuple[Offering, ...]:
        """Every nbgrader course on the hub: each course, or each section of one that has them."""
        return offerings(self.all_courses)

    @model_validator(mode="after")
    def egress_needs_firewall(self) -> Classroom:
        if self.network.egress != "open" and not self.spawner.firewall:
            raise ValueError(f"network.egress: {self.network.egress} is kept by the packet rules: it needs "
                             "spawner.firewall: true (or set network.egress: open)")
        if self.network.egress != "open" and self.spawner.kind == "swarm":
            raise ValueError(f"network.egress: {self.network.egress} is kept by a proxy and packet rules on the hub's "
                             "host only, not on a Swarm's other nodes: set network.egress: open with spawner.kind: swarm")
        return self

    @model_validator(mode="after")
    def homes_on_nodes_need_a_swarm(self) -> Classroom:
        if self.spawner.homes == "node" and self.spawner.kind != "swarm":
            raise ValueError("spawner.homes: node keeps each home on a Swarm node: it needs spawner.kind: swarm "
                             "(on one host, leave spawner.homes out)")
        return self

    def resolve(self, base: Path) -> Classroom:
        """Make relative paths relative to the folder holding classroom.yaml, not the cwd."""

        def rooted(path: Path) -> Path:
            return path if path.is_absolute() else (base / path).resolve()

        def course_rooted(course: Course) -> Course:
            source = course.source
            if "://" not in source and not source.startswith("git@"):
                source = str(rooted(Path(source)))
            return course.model_copy(update={"source": source, "assignments": rooted(course.assignments)})

        https = self.hub.https
        if https is not None:
            https = https.model_copy(update={"cert_file": rooted(https.cert_file), "key_file": rooted(https.key_file)})
        images = self.images.model_copy(
            update={
                "student": self.images.student.model_copy(update={"context": rooted(self.images.student.context)}),
                "student_gpu": self.images.student_gpu.model_copy(
                    update={"context": rooted(self.images.student_gpu.context)}
                ),
                "extra_ca_certs": rooted(self.images.extra_ca_certs) if self.images.extra_ca_certs else None,
            }
        )
        auth = self.auth
        if auth.ldap is not None and auth.ldap.ca_file is not None:
            auth = auth.model_copy(update={"ldap": auth.ldap.model_copy(update={"ca_file": rooted(auth.ldap.ca_file)})})
        return self.model_copy(
            update={
                "auth": auth,
                "course": course_rooted(self.course),
                "courses": tuple(course_rooted(c) for c in self.courses),
                "hub": self.hub.model_copy(update={"state_dir": rooted(self.hub.state_dir), "https": https}),
                "images": images,
            }
        )

    def limits_for(self, profile: Profile) -> Limits:
        return profile.limits or self.limits

    def profile(self, name: str) -> Profile:
        for profile in self.profiles:
            if profile.name == name:
                return profile
        raise KeyError(name)


def load(path: Path | str = "classroom.yaml") -> Classroom:
    path = Path(path)
    data = read_mapping(path)
    try:
        classroom = Classroom.model_validate(data).resolve(path.resolve().parent)
    except ValidationError as exc:
        raise ConfigError(describe(exc, str(path))) from None
    context = classroom.images.student.context
    if not (context / "Dockerfile").is_file():
        raise ConfigError(f"{path}: images.student.context: no Dockerfile in {context}")
    gpu_context = classroom.images.student_gpu.context
    if any(p.image == "student_gpu" for p in classroom.profiles) and not (gpu_context / "requirements.lock").is_file():
        raise ConfigError(f"{path}: images.student_gpu.context: no requirements.lock in {gpu_context}")
    return classroom
