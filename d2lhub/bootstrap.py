"""What `make up` and `make test` ensure before a hub can run: an engine, a proxy,
a base image, the student image and the classroom network.

Each step checks first and does nothing when all is there, so a second run is quick.
A registry-less or air-gapped site works: the base image is built from Debian's
packages with debootstrap unless the admin chooses to pull it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors

from d2lhub.config import Classroom

PACKAGE_DIR = Path(__file__).resolve().parent

LABEL = "org.d2lhub.instance"
SIOCGIFADDR = 0x8915  # Linux ioctl: an interface's IPv4 address
Say = Callable[[str], None]


class BootstrapError(Exception):
    """A prerequisite is missing and cannot be set up here; the message says what to do."""


def _default_say(message: str) -> None:
    print(f"d2lhub: {message}", file=sys.stderr, flush=True)


def labelled(instance: str) -> dict[str, str]:
    """Docker's list filter for what this hub instance made: everything carries its label."""
    return {"label": f"{LABEL}={instance}"}


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


def docker_client(timeout: int = 120) -> docker.DockerClient:
    return docker.from_env(timeout=timeout)


def engine_answers() -> bool:
    try:
        docker_client(timeout=5).ping()
        return True
    except Exception:
        return False


def ensure_engine(log_dir: Path, say: Say = _default_say, wait_seconds: int = 90) -> docker.DockerClient:
    """Use the engine that answers; on a Debian machine without one, install and start dockerd."""
    if engine_answers():
        return docker_client()
    if shutil.which("dockerd") is None:
        apt_install("docker.io", say=say)
    if not can_install_packages():
        raise BootstrapError("no Docker engine answers: start Docker (systemctl start docker) and try again")
    if shutil.which("systemctl") and subprocess.run(["systemctl", "is-system-running"], capture_output=True).returncode == 0:
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


def has_image(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
        return True
    except docker.errors.ImageNotFound:
        return False


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


def extra_certificates(classroom: Classroom) -> list[Path]:
    folder = classroom.images.extra_ca_certs
    if folder is None or not folder.is_dir():
        return []
    return sorted(path for path in folder.rglob("*.crt") if path.is_file())


def context_files(context: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(context)): path.read_bytes()
        for path in sorted(context.rglob("*"))
        if path.is_file() and path.name not in {"requirements.in", "README.md"}
    }


def images_in_use(classroom: Classroom) -> list[str]:
    """The student images the profiles run (`student`, `student_gpu`), CPU first."""
    return sorted({profile.image for profile in classroom.profiles}, key=lambda key: key != "student")


def image_inputs(classroom: Classroom, key: str = "student") -> dict[str, bytes]:
    """Every file that goes into the build context, by its name there.

    All student images share images/student's Dockerfile; another image's folder
    (student_gpu's) lays its own files, its lock, over that context.
    """
    files = context_files(classroom.images.student.context)
    if key != "student":
        files.update(context_files(getattr(classroom.images, key).context))
    files["delivery.py"] = (PACKAGE_DIR / "delivery.py").read_bytes()
    files["d2lhub_lazy_nbgrader.py"] = (PACKAGE_DIR / "lazy_nbgrader.py").read_bytes()
    files["d2lhub_singleuser.py"] = (PACKAGE_DIR / "lean_singleuser.py").read_bytes()
    for cert in extra_certificates(classroom):
        files[f"ca-certificates/{cert.name}"] = cert.read_bytes()
    files.setdefault("ca-certificates/.keep", b"")
    return files


def build_args(classroom: Classroom, key: str) -> dict[str, str]:
    return {"BASE_IMAGE": classroom.images.base, "VARIANT": "gpu" if key == "student_gpu" else "cpu"}


def image_tag(classroom: Classroom, base_id: str, key: str = "student") -> str:
    """The image's name, tagged by a hash of all its inputs, so unchanged inputs reuse it."""
    digest = hashlib.sha256(base_id.encode())
    for name, value in sorted(build_args(classroom, key).items()):
        digest.update(f"arg:{name}={value}".encode() + b"\0")
    for name, content in sorted(image_inputs(classroom, key).items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(content).digest())
    return f"{getattr(classroom.images, key).name}:{digest.hexdigest()[:16]}"


def student_image(classroom: Classroom, client: docker.DockerClient | None = None, key: str = "student") -> str:
    """The tag the hub runs; needs the base image present (its id is part of the hash)."""
    client = client or docker_client()
    try:
        base_id = client.images.get(classroom.images.base).id
    except docker.errors.ImageNotFound:
        raise BootstrapError(f"base image {classroom.images.base} is missing: run `make images`") from None
    return image_tag(classroom, base_id, key)


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
            labels={"org.d2lhub.image": key},
        ):
            if "error" in chunk:
                raise BootstrapError(f"building {tag} failed: {chunk['error'].strip()}")
            line = chunk.get("stream", "").strip()
            if line.startswith("Step "):
                last_step = line
                say(line[:120])
        if not has_image(client, tag):
            raise BootstrapError(f"building {tag} failed after {last_step}")


def ensure_network(client: docker.DockerClient, name: str, instance: str):
    """A bridge for student containers, with container-to-container traffic off (students can't reach each other)."""
    try:
        return client.networks.get(name)
    except docker.errors.NotFound:
        network = client.networks.create(
            name,
            driver="bridge",
            options={"com.docker.network.bridge.enable_icc": "false"},
            labels={LABEL: instance},
        )
        network.reload()
        return network


def swarm_network_name(instance: str) -> str:
    return f"{instance}-swarm"


def ensure_swarm_network(client: docker.DockerClient, instance: str):
    """A Swarm-scoped bridge for student services: each node makes its own local bridge of it when a
    student's task lands there (so published ports work and nothing crosses nodes). Swarm-scoped
    bridges drop driver options such as enable_icc; the firewall keeps containers apart instead."""
    name = swarm_network_name(instance)
    try:
        return client.networks.get(name)
    except docker.errors.NotFound:
        return client.networks.create(name, driver="bridge", scope="swarm", labels={LABEL: instance})


def swarm_manager_address(client: docker.DockerClient) -> str:
    """This engine's Swarm address; fails with what to do when it is no Swarm manager."""
    swarm = client.info().get("Swarm") or {}
    if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
        raise BootstrapError(
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
    raise BootstrapError(f"network {network.name} has no gateway address")


def interface_address(name: str) -> str | None:
    """The IPv4 address of a network interface on this host (SIOCGIFADDR); None when it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            request = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(request[20:24])


def ensure_images(client: docker.DockerClient, classroom: Classroom, say: Say = _default_say) -> dict[str, str]:
    """Every student image a profile runs, by key (`student`, `student_gpu`) -> tag."""
    return {key: ensure_student_image(client, classroom, say=say, key=key) for key in images_in_use(classroom)}


def ensure_all(classroom: Classroom, say: Say = _default_say) -> dict[str, str]:
    """Everything a hub needs; returns the student image tags by key."""
    client = ensure_engine(classroom.hub.state_dir, say=say)
    ensure_proxy(say=say)
    ensure_base_image(client, classroom, say=say)
    tags = ensure_images(client, classroom, say=say)
    ensure_network(client, classroom.spawner.instance, classroom.spawner.instance)
    return tags
