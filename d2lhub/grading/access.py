"""Which offering a grading verb works on, and whether its caller may: `--course`, and who asks.

A hub with one offering needs no `--course`; with several, every grading verb must name one, so
nothing is released to, collected from or exported of the wrong class by default.

Who asks: the host's admin runs the `d2lhub` command with the state folder's CLI token, and may
grade every offering. Anyone else identifies with a hub API token of their own (`--token`, or
`JUPYTERHUB_API_TOKEN` as their server's terminal has it): the hub says whose it is, and a caller
who is neither a hub admin nor in the offering's graders' group (`formgrade-<offering>`) is
refused before anything is read or written.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests

from d2lhub import hubapi
from d2lhub.config import Classroom
from d2lhub.courses import Offering, find_offering
from d2lhub.grading.errors import GradingError
from d2lhub.state import public_url


@dataclass(frozen=True)
class Caller:
    name: str
    admin: bool
    groups: frozenset[str]


def choose(classroom: Classroom, ref: str | None) -> Offering:
    """The offering `ref` names (`course`, `course/section` or its nbgrader id); none named: the hub's only one."""
    known = ", ".join(o.ref for o in classroom.offerings)
    if ref is None:
        if len(classroom.offerings) > 1:
            raise GradingError(f"this hub has several courses and sections: give --course (one of {known})")
        return classroom.offerings[0]
    try:
        return find_offering(classroom.all_courses, ref)
    except KeyError as error:
        raise GradingError(f"--course: {error.args[0]}") from None


def caller(classroom: Classroom, token: str) -> Caller:
    """Whose hub API token `token` is (the hub answers with the name), and their admin flag and groups
    (read with the CLI's own token: a user's token need not be allowed to read its groups)."""
    try:
        whoami = requests.get(f"{public_url(classroom)}/hub/api/user", headers={"Authorization": f"token {token}"},
                              timeout=30, verify=not classroom.hub.https)
        if whoami.status_code in (401, 403):
            raise GradingError("the hub does not accept the token given (--token or JUPYTERHUB_API_TOKEN): "
                               "make one on the hub's token page (/hub/token)")
        whoami.raise_for_status()
        name = whoami.json()["name"]
        user = hubapi.api(classroom, f"/users/{name}")
        user.raise_for_status()
    except (requests.RequestException, OSError, KeyError, ValueError) as error:
        raise GradingError(f"could not ask the hub who the token's owner is ({error})") from None
    model = user.json()
    return Caller(name, bool(model.get("admin")), frozenset(model.get("groups") or ()))


def offering_for(classroom: Classroom, ref: str | None, token: str | None) -> Offering:
    """The offering a verb works on, once its caller is known to teach it (no token: the host's admin)."""
    offering = choose(classroom, ref)
    if token:
        who = caller(classroom, token)
        if not who.admin and offering.graders_group not in who.groups:
            raise GradingError(f"{who.name} does not teach {offering.ref}: only its instructors and TAs "
                               f"(hub group {offering.graders_group}) and hub admins may grade it")
    return offering
