"""The hub's own registry (`spawner.registry: HOST:PORT`): Debian's `docker-registry`, in a
container on the hub's host, serving the student images to every Swarm node by digest.

It speaks TLS with a certificate the hub makes once (`state_dir/registry/`, its name is the
registry's address), which every engine trusts through Docker's per-registry folder
`/etc/docker/certs.d/HOST:PORT/ca.crt`: no engine is restarted or reconfigured, the hub's
own included. `d2lhub nodes add` prints that file for a new node.
"""

from __future__ import annotations

import hashlib
import ipaddress
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors
import requests

from d2lhub import labels
from d2lhub.config import Classroom
from d2lhub.engine import EngineError, has_image
from d2lhub.state import in_state

NODE_IMAGE = "d2lhub/node"  # Debian + docker.io + docker-registry: the registry and the test bed's engines
NODE_CONTEXT = Path(__file__).resolve().parents[2] / "images" / "node"
CERTS_DIR = Path("/etc/docker/certs.d")  # where every engine looks for a registry's CA (no restart)
STORAGE = "/var/lib/docker-registry"
# Debian's own config.yml asks for htpasswd logins; nodes pull without any (the images hold no secret)
CONFIG = f"""version: 0.1
storage: {{filesystem: {{rootdirectory: {STORAGE}}}, delete: {{enabled: false}}}}
http: {{addr: "0.0.0.0:5000", tls: {{certificate: /certs/registry.crt, key: /certs/registry.key}}}}
"""


class RegistryError(EngineError):
    """The registry cannot start or take an image; the message says what to do."""


def address(classroom: Classroom) -> tuple[str, int]:
    host, port = classroom.spawner.registry.rsplit(":", 1)
    return host, int(port)


def container_name(instance: str) -> str:
    return f"{instance}-registry"


def certificate_files(classroom: Classroom) -> tuple[Path, Path]:
    folder = in_state(classroom, "registry")
    return folder / "registry.crt", folder / "registry.key"


def ensure_certificate(classroom: Classroom) -> Path:
    """A self-signed certificate naming the registry's address (IP or DNS), made once."""
    cert, key = certificate_files(classroom)
    if cert.exists() and key.exists():
        return cert
    cert.parent.mkdir(parents=True, exist_ok=True)
    host, _ = address(classroom)
    try:
        san = f"IP:{ipaddress.ip_address(host)}"
    except ValueError:
        san = f"DNS:{host}"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", f"/CN={host}",
         "-addext", f"subjectAltName={san}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    key.chmod(0o600)
    return cert


def trust_file(classroom: Classroom, certs_dir: Path = CERTS_DIR) -> Path:
    return certs_dir / classroom.spawner.registry / "ca.crt"


def trust_here(classroom: Classroom) -> None:
    """This host's engine trusts the registry (it pushes there, and runs servers too)."""
    target = trust_file(classroom)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(ensure_certificate(classroom).read_bytes())


def trust_commands(classroom: Classroom) -> list[str]:
    """The shell lines that make a node's engine trust the registry (run as root on the node)."""
    target = trust_file(classroom)
    certificate = ensure_certificate(classroom).read_text()
    return [f"mkdir -p {target.parent}", f"cat > {target} <<'EOF'\n{certificate.rstrip()}\nEOF"]


def node_image(client: docker.DockerClient, base: str, say: Callable[[str], None] = print) -> str:
    """Build images/node FROM the base image (Debian's packages; nothing pulled); tagged by a hash of both."""
    base_id = client.images.get(base).id
    digest = hashlib.sha256(base_id.encode() + (NODE_CONTEXT / "Dockerfile").read_bytes()).hexdigest()[:16]
    tag = f"{NODE_IMAGE}:{digest}"
    if not has_image(client, tag):
        say(f"building {tag} (Debian's docker.io and docker-registry)")
        try:
            client.images.build(path=str(NODE_CONTEXT), tag=tag, buildargs={"BASE": base}, rm=True,
                                labels={labels.IMAGE: "node"})
        except docker.errors.BuildError as error:
            raise RegistryError(f"building {tag} failed: {error}") from None
    return tag


def ensure_registry(client: docker.DockerClient, classroom: Classroom, say: Callable[[str], None] = print) -> None:
    """The registry container, bound at `spawner.registry`'s address, answering over TLS."""
    instance = classroom.spawner.instance
    host, port = address(classroom)
    cert, _ = certificate_files(classroom)
    ensure_certificate(classroom)
    (cert.parent / "config.yml").write_text(CONFIG)
    try:
        container = client.containers.get(container_name(instance))
        if container.status != "running":
            container.start()
    except docker.errors.NotFound:
        say(f"starting the hub's registry at {host}:{port}")
        try:
            client.volumes.create(f"{instance}-registry", labels={labels.INSTANCE: instance, labels.ROLE: "registry"})
            client.containers.run(
                node_image(client, classroom.images.base, say),
                ["docker-registry", "serve", "/certs/config.yml"],
                name=container_name(instance), detach=True, restart_policy={"Name": "unless-stopped"},
                labels={labels.INSTANCE: instance, labels.ROLE: "registry"},
                ports={"5000/tcp": (host, port)},
                volumes={f"{instance}-registry": {"bind": STORAGE, "mode": "rw"},
                         str(cert.parent): {"bind": "/certs", "mode": "ro"}},
            )
        except docker.errors.APIError as error:
            raise RegistryError(f"the registry cannot start at {host}:{port}: {error.explanation}") from None
    wait_answers(classroom)


def wait_answers(classroom: Classroom, seconds: float = 30) -> None:
    cert, _ = certificate_files(classroom)
    deadline = time.monotonic() + seconds
    while True:
        try:
            answer = requests.get(f"https://{classroom.spawner.registry}/v2/", verify=str(cert), timeout=2)
            if answer.ok:
                return
            problem = f"HTTP {answer.status_code}"
        except requests.RequestException as error:
            problem = str(error)
        if time.monotonic() > deadline:
            raise RegistryError(f"the registry at {classroom.spawner.registry} does not answer: {problem}")
        time.sleep(0.3)


def push(client: docker.DockerClient, classroom: Classroom, tag: str) -> str:
    """Push one image; returns `REGISTRY/NAME@sha256:...`, the name services run it by."""
    name, version = tag.rsplit(":", 1)
    repository = f"{classroom.spawner.registry}/{name}"
    client.api.tag(tag, repository, version)
    digest = None
    for line in client.api.push(repository, version, stream=True, decode=True):
        if "error" in line:
            raise RegistryError(f"pushing {tag} to {classroom.spawner.registry} failed: {line['error']}")
        digest = (line.get("aux") or {}).get("Digest", digest)
    if not digest:
        raise RegistryError(f"pushing {tag} to {classroom.spawner.registry} gave no digest")
    return f"{repository}@{digest}"


def serve_images(client: docker.DockerClient, classroom: Classroom, tags: dict[str, str],
                 say: Callable[[str], None] = print) -> dict[str, str]:
    """Start the registry, trust it here, push every student image: key -> reference by digest."""
    ensure_registry(client, classroom, say)
    trust_here(classroom)
    pushed = {}
    for key, tag in tags.items():
        say(f"pushing {tag} to {classroom.spawner.registry}")
        pushed[key] = push(client, classroom, tag)
    return pushed


def remove(client: docker.DockerClient, classroom: Classroom) -> None:
    """The registry's container and this host's trust in it (its volume stays, like homes)."""
    try:
        client.containers.get(container_name(classroom.spawner.instance)).remove(force=True)
    except docker.errors.NotFound:
        pass
    trust_file(classroom).unlink(missing_ok=True)
    try:
        trust_file(classroom).parent.rmdir()
    except OSError:
        pass
