"""The `org.d2lhub.*` labels on the Docker objects a hub makes, one meaning each, and their names.

Everything a hub instance makes carries INSTANCE, so it can be found and cleaned up by label;
the others say what an object is or whom it serves. Node labels (set by `d2lhub nodes add`)
describe a Swarm node, never a container.
"""

from __future__ import annotations

INSTANCE = "org.d2lhub.instance"  # every object: the hub instance (spawner.instance) that made it
ROLE = "org.d2lhub.role"  # throwaway containers and shared volumes: data, autograde, course-check...
IMAGE = "org.d2lhub.image"  # a built student image: its key (student, student_gpu)
USER = "org.d2lhub.user"  # a server or home volume: the student it belongs to
UID = "org.d2lhub.uid"  # a home volume: the uid its files belong to (collect trusts it)
PROFILE = "org.d2lhub.profile"  # a server: the profile it runs
SERVER = "org.d2lhub.server"  # a server: user or user/server, who its GPUs belong to
SERVER_GPUS = "org.d2lhub.gpus"  # a server: the GPU ids assigned to it
SERVER_GPU_HOST = "org.d2lhub.gpu-host"  # a server: the host whose GPUs those are
NODE_GPUS = "org.d2lhub.node-gpus"  # a Swarm node: the GPU ids it has (capacity, allocator)
NODE_GPU_FLAG = "org.d2lhub.gpu"  # a Swarm node: "true" where GPU profiles may be placed


def labelled(instance: str) -> dict[str, str]:
    """Docker's list filter for what this hub instance made."""
    return {"label": f"{INSTANCE}={instance}"}


def data_volume(instance: str) -> str:
    """The one volume holding the data sets every student reads (`d2lhub course data` fills it)."""
    return f"{instance}-data"


def home_volume(instance: str, escaped_user: str) -> str:
    return f"{instance}-home-{escaped_user}"


def swarm_network(instance: str) -> str:
    return f"{instance}-swarm"
