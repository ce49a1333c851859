"""From an identity's groups to the classroom: roles, the hub's groups, admin, and who may sign in.

Pure functions, shared by every sign-in kind that brings groups along (OIDC claims, LDAP
groups, LMS roles): they name no provider and touch nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

GRADER_ROLES = frozenset({"instructor", "ta"})


def roles_from_groups(groups: Iterable[str], role_groups: Mapping[str, Iterable[str]]) -> set[str]:
    """Every role one of whose groups the identity is in."""
    held = set(groups)
    return {role for role, names in role_groups.items() if held & set(names)}


def may_sign_in(groups: Iterable[str], roles: Iterable[str], allowed_groups: Iterable[str]) -> bool:
    """The allow-list: a role from the map, or membership of an allowed group. Never anyone else."""
    return bool(set(roles)) or bool(set(groups) & set(allowed_groups))


def hub_membership(roles: Iterable[str], course_groups: Mapping[str, str]) -> tuple[list[str], bool]:
    """The course's hub groups these roles put a person in (`course_groups` is
    d2lhub.grading.layout.group_names: students, graders), and whether they are an admin."""
    roles = set(roles)
    groups = []
    if "student" in roles:
        groups.append(course_groups["students"])
    if roles & GRADER_ROLES:
        groups.append(course_groups["graders"])
    return groups, "admin" in roles


def claim_values(claims: Mapping, path: str) -> list[str]:
    """A claim's values by a dotted path (`groups`, `realm_access.roles`): a list, one string, or nothing."""
    value: object = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(item) for item in value] if isinstance(value, (list, tuple, set)) else []


def refusal(name: str) -> str:
    """What a person outside the allow-list reads (the groups themselves are not shown)."""
    return (f"You signed in as {name}, but {name} is not in a group allowed to use this class's hub. "
            "If you take or teach this course, ask your instructor to add you.")
