"""The spawn page's server types: which profiles a student may choose, the picker they see, and
the refusal of one they may not (pure: the spawner passes in the classroom and the user)."""

from __future__ import annotations

from html import escape

from d2lhub.config import Classroom, Profile


def allowed(classroom: Classroom, groups: set[str]) -> list[Profile]:
    return [p for p in classroom.profiles if not p.groups or groups.intersection(p.groups)]


def describe(classroom: Classroom, profile: Profile) -> str:
    limits = classroom.limits_for(profile)
    gpus_text = f", {profile.gpus} GPU{'s' if profile.gpus > 1 else ''}" if profile.gpus else ""
    return f"{limits.cpu:g} CPU, {limits.memory / 2**30:.3g} GB memory{gpus_text}"


def picker(classroom: Classroom, profiles: list[Profile]) -> str:
    """Labelled radios, the first checked; empty (no form at all) for one profile."""
    if len(profiles) <= 1:
        return ""
    choices = "\n".join(
        f'<div class="form-check"><input class="form-check-input" type="radio" name="profile" '
        f'id="profile-{p.name}" value="{p.name}" aria-describedby="profile-{p.name}-limits"'
        f'{" checked" if i == 0 else ""}>'
        f'<label class="form-check-label" for="profile-{p.name}">{escape(p.display_name)}</label> '
        f'<small class="text-muted" id="profile-{p.name}-limits">{escape(describe(classroom, p))}</small></div>'
        for i, p in enumerate(profiles)
    )
    return f"<fieldset><legend>Choose your server</legend>{choices}</fieldset>"


def named(classroom: Classroom, profiles: list[Profile], user: str, name: str) -> Profile:
    """The profile `name` among those offered to `user`; ValueError saying why not otherwise."""
    for profile in profiles:
        if profile.name == name:
            return profile
    offered = ", ".join(p.name for p in profiles) or "none"
    if any(p.name == name for p in classroom.profiles):
        raise ValueError(f"The server type {name!r} is not offered to {user} (offered: {offered}).")
    raise ValueError(f"There is no server type {name!r} in this classroom (offered to {user}: {offered}).")
