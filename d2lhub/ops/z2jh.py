"""classroom.yaml -> a zero-to-jupyterhub Helm values file, for when a class moves to Kubernetes.

Same images, profiles, limits and culling as the Docker hub. On Kubernetes the
device plugin hands out GPUs (`nvidia.com/gpu` resource limits), so the profiles
carry counts, not device ids; per-group profiles become a profile_list filter in
hub.extraConfig because KubeSpawner has no group setting of its own.
"""

from __future__ import annotations

import json

from d2lhub.config import Classroom, Profile

GPU_RESOURCE = "nvidia.com/gpu"
HOME = "/home/jovyan"

# The chart sets c.KubeSpawner.profile_list from singleuser.profileList before extraConfig runs;
# KubeSpawner also accepts a callable, which here offers each profile only to its groups.
GROUP_FILTER = '''\
import json

d2lhub_groups = json.loads({groups!r})
d2lhub_all_profiles = c.KubeSpawner.profile_list


def d2lhub_profiles(spawner):
    mine = {{group.name for group in spawner.user.groups}}
    return [
        profile
        for profile in d2lhub_all_profiles
        if not d2lhub_groups.get(profile["slug"]) or mine.intersection(d2lhub_groups[profile["slug"]])
    ]


c.KubeSpawner.profile_list = d2lhub_profiles
'''


def image_parts(tag: str, registry: str) -> tuple[str, str]:
    name, _, version = tag.rpartition(":")
    return f"{registry.rstrip('/')}/{name}" if registry else name, version


def profile_entry(classroom: Classroom, profile: Profile, images: dict[str, str], registry: str, first: bool) -> dict:
    limits = classroom.limits_for(profile)
    name, version = image_parts(images[profile.image], registry)
    override: dict = {
        "image": f"{name}:{version}",
        "cpu_limit": limits.cpu,
        "mem_limit": limits.memory,
        "mem_guarantee": min(limits.memory, 1024**3),
    }
    if profile.gpus:
        override["extra_resource_limits"] = {GPU_RESOURCE: str(profile.gpus)}
    entry = {"display_name": profile.display_name, "slug": profile.name, "kubespawner_override": override}
    if first:
        entry["default"] = True
    return entry


def values(classroom: Classroom, images: dict[str, str], registry: str = "") -> dict:
    """The Helm values; `images` maps the profiles' image keys to the tags `make images` built."""
    missing = sorted({p.image for p in classroom.profiles} - set(images))
    if missing:
        raise ValueError(f"no built image for {', '.join(missing)}")
    profiles = [
        profile_entry(classroom, profile, images, registry, index == 0)
        for index, profile in enumerate(classroom.profiles)
    ]
    default = classroom.profiles[0]
    name, version = image_parts(images[default.image], registry)
    hub: dict = {
        "config": {"JupyterHub": {"concurrent_spawn_limit": classroom.hub.concurrent_spawn_limit}},
    }
    groups = {p.name: list(p.groups) for p in classroom.profiles if p.groups}
    singleuser: dict = {
        "image": {"name": name, "tag": version},
        "cmd": "d2lhub-start",
        "defaultUrl": "/lab/tree/d2l",
        "startTimeout": classroom.hub.start_timeout,
        "cpu": {"limit": classroom.limits.cpu},
        "memory": {"limit": classroom.limits.memory, "guarantee": min(classroom.limits.memory, 1024**3)},
        "storage": {"homeMountPath": HOME},
        "extraEnv": {"D2LHUB_COURSE": classroom.course.id},
        "profileList": profiles,
    }
    if groups:
        hub["extraConfig"] = {"d2lhub-profiles.py": GROUP_FILTER.format(groups=json.dumps(groups, sort_keys=True))}
    return {
        "hub": hub,
        "singleuser": singleuser,
        "cull": {
            "enabled": classroom.culling.enabled,
            "timeout": classroom.culling.timeout,
            "every": classroom.culling.every,
        },
    }

