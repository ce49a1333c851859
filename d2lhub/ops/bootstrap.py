"""What `make up` and `make test` ensure before a hub can run: an engine (with live-restore as the
classroom's kind needs it, d2lhub.ops.liverestore), a proxy (and squid, the students' egress proxy),
a base image, the student image and the classroom network.

Each step checks first and does nothing when all is there, so a second run is quick.
A registry-less or air-gapped site works: the base image is built from Debian's
packages with debootstrap unless the admin chooses to pull it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors

from d2lhub import homefs, labels
from d2lhub.config import Classroom
from d2lhub.engine import (
    EngineError,
    docker_client,
    engine_answers,
    ensure_network,
    has_image,
)
from d2lhub.hub import homes
from d2lhub.hub.facts import find_squid
from d2lhub.ops import liverestore
from d2lhub.studentimage import build_args, image_inputs, images_in_use, student_image

Say = Callable[[str], None]


class BootstrapError(EngineError):
    """A prerequisite is missing and cannot be set up here; the message says what to do."""


def _default_say(message: str) -> None:
    print(f"d2lhub: {message}", file=sys.stderr, flush=True)


def can_install_packages() -> bool:
    return sys.platform.startswith("linux") and os.geteuid() == 0 and shutil.which("apt-get") is not None


def apt_install(*packages: str, say: Say = _default_say) -> None:
    if not can_install_packages():
        raise BootstrapError(f"missing {', '.join(packages)}: install them (Debian/Ubuntu: apt-get install {' '.join(packages)})")
    say(f"installing {', '.join(packages)} from Debian's packages")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lists = Path("/var/lib/apt/lists")
    if not any(lists.glob("*Packages*")):
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    result = subprocess.run(["apt-get", "install", "-y", "-qq", *packages], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env, capture_output=True)


def systemd_runs() -> bool:
    return bool(shutil.which("systemctl")) and subprocess.run(
        ["systemctl", "is-system-running"], capture_output=True).returncode == 0


def ensure_engine(log_dir: Path, say: Say = _default_say, wait_seconds: int = 90) -> docker.DockerClient:
    """Use the engine that answers; on a Debian machine without one, install and start dockerd."""
    if engine_answers():
        return docker_client()
    if shutil.which("dockerd") is None:
        apt_install("docker.io", say=say)
    if not can_install_packages():
        raise BootstrapError("no Docker engine answers: start Docker (systemctl start docker) and try again")
    if systemd_runs():
        subprocess.run(["systemctl", "start", "docker"], check=False)
    if not engine_answers():
        log_dir.mkdir(parents=True, exist_ok=True)
        say(f"starting dockerd (log: {log_dir / 'dockerd.log'})")
        with open(log_dir / "dockerd.log", "ab") as log:
            subprocess.Popen(["dockerd"], stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if engine_answers():
            return docker_client()
        time.sleep(1)
    raise BootstrapError(f"dockerd did not answer within {wait_seconds}s; see {log_dir / 'dockerd.log'}")


def ensure_proxy(say: Say = _default_say) -> str:
    """configurable-http-proxy, JupyterHub's proxy, from npm."""
    found = shutil.which("configurable-http-proxy")
    if found:
        return found
    if shutil.which("npm") is None:
        apt_install("nodejs", "npm", say=say)
    say("installing configurable-http-proxy from npm")
    subprocess.run(["npm", "install", "-g", "--silent", "configurable-http-proxy@4.6.3"], check=True)
    found = shutil.which("configurable-http-proxy")
    if not found:
        raise BootstrapError("configurable-http-proxy is not on PATH after `npm install -g`")
    return found


def ensure_egress_proxy(classroom: Classroom | None = None, say: Say = _default_say) -> str | None:
    """squid, Debian's forward proxy, for `network.egress: allowlist` (d2lhub.hub.egress); the hub runs
    its own, so a system squid that the package starts is stopped and disabled again."""
    if classroom is not None and classroom.network.egress != "allowlist":
        return None
    found = find_squid()
    if found:
        return found
    apt_install("squid", say=say)
    if systemd_runs():
        say("stopping the system's squid service (the hub runs its own, for its students only)")
        subprocess.run(["systemctl", "disable", "--now", "squid"], check=False, capture_output=True)
    found = find_squid()
    if not found:
        raise BootstrapError("squid is not installed after `apt-get install squid`")
    return found


def debian_suite(image: str) -> str:
    """`debian:bookworm-slim` -> `bookworm`; only Debian bases can be built locally."""
    repository, _, tag = image.partition(":")
    if repository not in {"debian", "docker.io/library/debian"} or not tag:
        raise BootstrapError(
            f"images.base {image!r} cannot be built from Debian's packages; set images.base_source: pull"
        )
    return tag.removesuffix("-slim")


def ensure_base_image(client: docker.DockerClient, classroom: Classroom, say: Say = _default_say) -> str:
    base = classroom.images.base
    if has_image(client, base):
        return base
    if classroom.images.base_source == "pull":
        say(f"pulling {base}")
        client.images.pull(base)
        return base
    suite = debian_suite(base)
    if shutil.which("debootstrap") is None:
        apt_install("debootstrap", say=say)
    say(f"building {base} from Debian's packages (debootstrap --variant=minbase {suite})")
    with tempfile.TemporaryDirectory(prefix="d2lhub-rootfs-") as work:
        rootfs = Path(work) / "rootfs"
        subprocess.run(
            ["debootstrap", "--variant=minbase", suite, str(rootfs), "http://deb.debian.org/debian"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # Same trimming as the official slim image: no apt caches in every layer built on it.
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        tarball = Path(work) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], check=True)
        repository, _, tag = base.partition(":")
        client.api.import_image(src=str(tarball), repository=repository, tag=tag, changes=['CMD ["bash"]'])
    return base


def ensure_student_image(
    client: docker.DockerClient, classroom: Classroom, say: Say = _default_say, key: str = "student"
) -> str:
    tag = student_image(classroom, client, key)
    if not has_image(client, tag):
        say(f"building {tag} (a first build takes several minutes)")
        build_student_image(client, classroom, tag, say, key)
    client.api.tag(tag, getattr(classroom.images, key).name, "latest")  # `latest` follows the inputs back too
    return tag


def build_student_image(
    client: docker.DockerClient, classroom: Classroom, tag: str, say: Say = _default_say, key: str = "student",
    nocache: bool = False,
) -> None:
    """Build the image from its assembled inputs (the folder, the certificates, the delivery script)."""
    with tempfile.TemporaryDirectory(prefix="d2lhub-build-") as work:
        for name, content in image_inputs(classroom, key).items():
            target = Path(work) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        (Path(work) / "d2lhub-start").chmod(0o755)
        last_step = ""
        for chunk in client.api.build(
            path=work,
            tag=tag,
            buildargs=build_args(classroom, key),
            rm=True,
            forcerm=True,
            nocache=nocache,
            decode=True,
            labels={labels.IMAGE: key},
        ):
            if "error" in chunk:
                raise BootstrapError(f"building {tag} failed: {chunk['error'].strip()}")
            line = chunk.get("stream", "").strip()
            if line.startswith("Step "):
                last_step = line
                say(line[:120])
        if not has_image(client, tag):
            raise BootstrapError(f"building {tag} failed after {last_step}")


def ensure_images(client: docker.DockerClient, classroom: Classroom, say: Say = _default_say) -> dict[str, str]:
    """Every student image a profile runs, by key (`student`, `student_gpu`) -> tag."""
    return {key: ensure_student_image(client, classroom, say=say, key=key) for key in images_in_use(classroom)}


def ensure_all(classroom: Classroom, say: Say = _default_say) -> dict[str, str]:
    """Everything a hub needs; returns the student image tags by key."""
    client = ensure_engine(classroom.hub.state_dir, say=say)
    liverestore.ensure(client, classroom.spawner.kind, say=say)  # students' servers outlive an engine restart (not in a Swarm)
    ensure_homes(client, classroom, say=say)  # first: a home limit the host cannot keep stops here
    ensure_proxy(say=say)
    ensure_egress_proxy(classroom, say=say)
    ensure_base_image(client, classroom, say=say)
    tags = ensure_images(client, classroom, say=say)
    ensure_network(client, classroom.spawner.instance, classroom.spawner.instance)
    if classroom.spawner.kind == "swarm":
        from d2lhub.ops import nodeguard, registry  # only a Swarm classroom needs them

        if classroom.spawner.registry:
            registry.serve_images(client, classroom, tags, say=say)
        nodeguard.ensure(client, classroom, say=say)  # the packet rules on every other node
    return tags


def ensure_homes(client: docker.DockerClient, classroom: Classroom, say: Say = _default_say) -> None:
    """The homes file system with its quotas (btrfs-progs installed when missing); refuses, with the reason,
    a limits.home this host cannot keep."""
    if homefs.enabled(classroom) and shutil.which("mkfs.btrfs") is None and can_install_packages():
        apt_install("btrfs-progs", say=say)
    try:
        homes.ensure_filesystem(client, classroom, say)
    except homefs.QuotaError as error:
        raise BootstrapError(str(error)) from None
