"""The student image as the rest of d2lhub relies on it: where things are inside it, which
files go into its build, and the tag that names one build of those inputs.

The tag is a hash of every input (Dockerfile, lock files, the scripts from `d2lhub/image/`,
extra CA certificates, the base image's id), so the hub, the sandbox and the course check
all run exactly the image that `make images` built from this checkout, or refuse to start.
Building it is `d2lhub.ops.imagebuild`'s.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import docker
import docker.errors

from d2lhub.config import Classroom
from d2lhub.engine import EngineError, docker_client, has_image

HOME = "/home/jovyan"
COURSE_MOUNT = "/srv/d2l/course"
DATA_MOUNT = "/srv/d2l/data"  # the class's data cache, read-only; the image's MXNET_HOME lies under it
STUDENT_GID = 100  # "users": shared by students so group-readable course files work
IN_IMAGE_DIR = Path(__file__).resolve().parent / "image"
# The scripts from d2lhub/image/ that the Dockerfile copies in, by their name in the build context.
IN_IMAGE_FILES = {
    "delivery.py": "delivery.py",
    "exercises.py": "exercises.py",
    "d2lhub_lazy_nbgrader.py": "lazy_nbgrader.py",
    "d2lhub_singleuser.py": "lean_singleuser.py",
    "d2lhub_datacache.py": "datacache.py",
}


def images_in_use(classroom: Classroom) -> list[str]:
    """The student images the profiles run (`student`, `student_gpu`), CPU first."""
    return sorted({profile.image for profile in classroom.profiles}, key=lambda key: key != "student")


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


def image_inputs(classroom: Classroom, key: str = "student") -> dict[str, bytes]:
    """Every file that goes into the build context, by its name there.

    All student images share images/student's Dockerfile; another image's folder
    (student_gpu's) lays its own files, its lock, over that context.
    """
    files = context_files(classroom.images.student.context)
    if key != "student":
        files.update(context_files(getattr(classroom.images, key).context))
    for name, source in IN_IMAGE_FILES.items():
        files[name] = (IN_IMAGE_DIR / source).read_bytes()
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
        raise EngineError(f"base image {classroom.images.base} is missing: run `make images`") from None
    return image_tag(classroom, base_id, key)


def built_image(classroom: Classroom, client: docker.DockerClient | None = None, key: str = "student") -> str:
    """The tag to run, refusing with what to do when this checkout's image is not built."""
    client = client or docker_client()
    tag = student_image(classroom, client, key)
    if not has_image(client, tag):
        raise EngineError(f"student image {tag} is not built: run `make images`")
    return tag
