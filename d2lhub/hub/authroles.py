"""From an identity's groups to the classroom: roles, the hub's groups, admin, and who may sign in.

Pure functions, shared by every sign-in kind that brings groups along (OIDC claims, LDAP
groups, LMS roles): they name no provider and touch nothing.

Which offering (course or section) a person joins: each entry of `auth.oidc.courses` /
`auth.ldap.courses` names an offering and the identity's groups whose members are its students,
TAs or instructors; on a hub with one course and no sections the hub-wide `roles` do that too,
as they did before several courses. `course_memberships` turns both into one map, identity
group -> the hub groups (`nbgrader-<id>`, `formgrade-<id>`) its members join.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from d2lhub.authconfig import CourseRoles, IdentityGroups
from d2lhub.courses import Course, Offering, named, offerings

COURSE_ROLES = ("student", "ta", "instructor")


def roles_from_groups(groups: Iterable[str], role_groups: Mapping[str, Iterable[str]]) -> set[str]:
    """Every role one of whose groups the identity is in."""
    held = set(groups)
    return {role for role, names in role_groups.items() if held & set(names)}


def may_sign_in(groups: Iterable[str], roles: Iterable[str], allowed_groups: Iterable[str]) -> bool:
    """The allow-list: a role from the map, or membership of an allowed group. Never anyone else."""
    return bool(set(roles)) or bool(set(groups) & set(allowed_groups))


def course_memberships(courses: tuple[Course, ...], identity: IdentityGroups) -> dict[str, list[str]]:
    """Identity group -> the offerings' hub groups its members join (see the module's docstring)."""
    found: dict[str, list[str]] = {}

    def join(roles: CourseRoles, where: Callable[[str], tuple[Offering, ...]]) -> None:
        for role in COURSE_ROLES:
            for group in getattr(roles, role):
                for offering in where(role):
                    hub_group = offering.students_group if role == "student" else offering.graders_group
                    found.setdefault(group, [])
                    if hub_group not in found[group]:
                        found[group].append(hub_group)

    everything = offerings(courses)
    if len(everything) == 1:
        join(identity.roles, lambda role: everything)
    for ref, roles in identity.courses.items():
        join(roles, lambda role, ref=ref: named(courses, ref, role))
    return found


def hub_groups(identity_groups: Iterable[str], memberships: Mapping[str, Iterable[str]]) -> list[str]:
    """The offerings' hub groups these identity groups put a person in, sorted."""
    return sorted({hub_group for group in identity_groups for hub_group in memberships.get(group, ())})


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
