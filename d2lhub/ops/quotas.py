"""Students' home usage against their limits (`d2lhub status`) and one student's limit (`d2lhub quota`)."""

from __future__ import annotations

from d2lhub import homefs, hubapi, labels
from d2lhub.config import Classroom
from d2lhub.engine import docker_client
from d2lhub.sizes import format_size


def home_volumes(classroom: Classroom) -> dict[str, str]:
    """user -> their home volume, by the labels the hub wrote."""
    found = docker_client().volumes.list(filters=labels.labelled(classroom.spawner.instance))
    return {v.attrs["Labels"][labels.USER]: v.name for v in found if labels.USER in (v.attrs.get("Labels") or {})}


def home_usage(classroom: Classroom) -> dict[str, str]:
    """user -> `used / limit` of their home (`used / no limit` without one); empty when homes have no limits."""
    if not homefs.enabled(classroom):
        return {}
    shown = {}
    for user, volume in home_volumes(classroom).items():
        path = homefs.home_path(classroom, volume)
        if path.is_dir():
            used, limit = homefs.usage(path)
            shown[user] = f"{format_size(used)} / {format_size(limit) if limit else 'no limit'}"
    return shown


def set_quota(classroom: Classroom, user: str, size: int) -> str:
    """Give `user` a home limit of `size` from now on (kept in the state folder, applied at once when their
    home exists, and at each of their starts); returns what was done, in words."""
    if not homefs.enabled(classroom):
        raise homefs.QuotaError("limits.home is null in classroom.yaml: homes have no limits to change")
    if size > classroom.hub.homes_size or size < homefs.SMALLEST:
        raise homefs.QuotaError(f"SIZE: {format_size(size)} is outside what the homes file system can keep "
                                f"({format_size(homefs.SMALLEST)} to hub.homes_size, {format_size(classroom.hub.homes_size)})")
    volume = home_volumes(classroom).get(user)
    if volume is None and hubapi.answers(classroom) and hubapi.api(classroom, f"/users/{user}").status_code == 404:
        raise homefs.QuotaError(f"NAME: the hub has no user {user!r}")
    homefs.set_override(classroom, user, size)
    if volume is None:
        return f"{user} gets {format_size(size)} when their home is made (at their first start)"
    path = homefs.home_path(classroom, volume)
    homefs.set_limit(path, size)
    used, _ = homefs.usage(path)
    return f"{user}'s home may now hold {format_size(size)} ({format_size(used)} used)"
