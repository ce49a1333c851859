"""`d2lhub roster sync` and `d2lhub grades push`: the class list from the LMS, the grades back to it.

roster sync reads the course's members (LTI Names and Role Provisioning Services) and checks all of
them before changing anything, as `roster import` does; applying is idempotent. A member who left
(or is no longer active) and whom the hub knew from the LMS is dropped: out of the course's groups,
their server stopped, refused at launch; their hub user, files and grades stay.

grades push posts each student's score of one assignment (nbgrader's total: autograded plus manual)
to the LMS line item whose resourceId is the assignment's name (created when missing). A score the
LMS already holds is not sent again, so a second run sends nothing, and a run that stopped part-way
is completed by the next.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from d2lhub import lticonfig, ltistate
from d2lhub.config import Classroom
from d2lhub.courses import Offering
from d2lhub.grading import workflow
from d2lhub.grading.ltiservices import LtiError, Platform, service_url, settings
from d2lhub.grading.roster import hub_call

GRADERS = ("ta", "instructor")


@dataclass
class Member:
    name: str
    user_id: str
    role: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""


@dataclass
class SyncReport:
    added: list[tuple[str, str]] = field(default_factory=list)  # (name, role)
    changed: list[tuple[str, str]] = field(default_factory=list)  # (name, "old -> new")
    dropped: list[str] = field(default_factory=list)
    unchanged: int = 0


def members(classroom: Classroom, raw: list[dict]) -> list[Member]:
    """The active members with a classroom role, or LtiError listing every member that cannot be one."""
    lti = settings(classroom)
    errors, found, owners = [], [], {}
    for entry in raw:
        if entry.get("status", "Active") != "Active":
            continue
        role = lticonfig.role_of(entry.get("roles") or [], lti.roles)
        if role is None:
            continue  # an observer, a mentor...: no place in the classroom
        source = entry.get("email") if lti.username_from == "email" else entry.get("user_id")
        try:
            name = lticonfig.hub_name(source, lti.username_from)
        except ValueError as exc:
            errors.append(f"member {entry.get('user_id')!r}: {exc}")
            continue
        if name in owners:
            errors.append(f"members {owners[name]!r} and {entry.get('user_id')!r} would both be {name!r}")
            continue
        owners[name] = entry.get("user_id")
        found.append(Member(name, str(entry.get("user_id")), role, entry.get("given_name") or "",
                            entry.get("family_name") or "", entry.get("email") or ""))
    if errors:
        raise LtiError("the LMS's roster was refused (nothing changed):\n" + "\n".join(errors))
    return found


def role_now(name: str, roles: dict[str, str], students: set[str], graders: set[str]) -> str | None:
    if name in roles:
        return roles[name]
    return "student" if name in students else "instructor" if name in graders else None


def offering_groups(offering: Offering) -> dict[str, str]:
    return {"students": offering.students_group, "graders": offering.graders_group}


def sync(classroom: Classroom, offering: Offering) -> SyncReport:
    """The LMS course's members into `offering`: its hub groups and gradebook."""
    url = service_url(classroom, "memberships_url")
    people = members(classroom, Platform(classroom, "memberships").members(url))
    state_dir = classroom.hub.state_dir
    if not people:
        raise LtiError(f"the LMS lists no active member with a classroom role at {url} (nothing changed)")
    groups = offering_groups(offering)
    existing = {user["name"] for user in hub_call(classroom, "/users").json()}
    for group in groups.values():
        hub_call(classroom, f"/groups/{group}", "POST", ok=(201, 409))
    in_group = {key: set(hub_call(classroom, f"/groups/{g}").json()["users"]) for key, g in groups.items()}
    known, roles, disabled = ltistate.users(state_dir), ltistate.read(state_dir, "roles.json", {}), ltistate.disabled(state_dir)
    report = SyncReport()
    new = [m.name for m in people if m.name not in existing]
    if new:
        hub_call(classroom, "/users", "POST", json={"usernames": new})
    for member in people:
        before = None if member.name in new else role_now(member.name, roles, in_group["students"], in_group["graders"])
        if member.name in new:
            report.added.append((member.name, member.role))
        elif before != member.role or member.name in disabled:
            report.changed.append((member.name, f"{'dropped' if member.name in disabled else before} -> {member.role}"))
        else:
            report.unchanged += 1
        place(classroom, offering, member.name, member.role, in_group)
    current = {m.name for m in people}
    for name in sorted((in_group["students"] | in_group["graders"]) & set(known) - current):
        place(classroom, offering, name, None, in_group)
        hub_call(classroom, f"/users/{name}/server", "DELETE", ok=(202, 204, 400, 404))
        report.dropped.append(name)
    with workflow.gradebook(classroom, offering) as gb:
        for member in people:
            if member.role == "student":
                gb.update_or_create_student(member.name, first_name=member.first_name,
                                            last_name=member.last_name, email=member.email)
    ltistate.write(state_dir, "users.json", {**known, **{m.name: m.user_id for m in people}})
    ltistate.write(state_dir, "roles.json", {**roles, **{m.name: m.role for m in people}})
    ltistate.write(state_dir, "disabled.json", sorted((set(disabled) - current) | set(report.dropped)))
    return report


def place(classroom: Classroom, offering: Offering, name: str, role: str | None, in_group: dict[str, set[str]]) -> None:
    """Put `name` in the offering's group of its role, out of the other (out of both for None), admin as its role says."""
    groups = offering_groups(offering)
    wanted = "students" if role == "student" else "graders" if role in GRADERS else None
    for key, group in groups.items():
        if key == wanted and name not in in_group[key]:
            hub_call(classroom, f"/groups/{group}/users", "POST", json={"users": [name]})
        elif key != wanted and name in in_group[key]:
            hub_call(classroom, f"/groups/{group}/users", "DELETE", json={"users": [name]})
    if role is not None:
        hub_call(classroom, f"/users/{name}", "PATCH", json={"admin": role == "admin"})


@dataclass
class PushRow:
    student: str
    score: str
    status: str  # sent, unchanged, skipped, refused
    note: str = ""


def scores(classroom: Classroom, offering: Offering, assignment: str) -> tuple[float, dict[str, tuple[float, str] | str]]:
    """(the assignment's maximum, student -> (score, AGS grading progress), or why there is none yet)."""
    with workflow.gradebook(classroom, offering) as gb:
        try:
            maximum = float(gb.find_assignment(assignment).max_score)
        except workflow.MissingEntry:
            raise LtiError(f"{assignment}: no such assignment in the gradebook (release and autograde it first)") from None
        found: dict[str, tuple[float, str] | str] = {}
        for student in sorted(s.id for s in gb.students):
            try:
                submission = gb.find_submission(assignment, student)
            except workflow.MissingEntry:
                found[student] = "no graded submission yet"
                continue
            found[student] = (float(submission.score), "PendingManual" if submission.needs_manual_grade else "FullyGraded")
    return maximum, found


def push(classroom: Classroom, offering: Offering, assignment: str) -> list[PushRow]:
    """Send what the LMS lacks: a score it does not hold, or one whose manual grading finished since."""
    maximum, found = scores(classroom, offering, assignment)
    platform = Platform(classroom, "lineitem", "results", "score")
    item = platform.line_item(service_url(classroom, "lineitems_url"), assignment, assignment, maximum)
    held = platform.results(item)
    state_dir = classroom.hub.state_dir
    known, ledger = ltistate.users(state_dir), ltistate.read(state_dir, "pushed.json", {})
    sent = ledger.setdefault(assignment, {})
    rows = []
    for student, graded in found.items():
        if isinstance(graded, str):
            rows.append(PushRow(student, "", "skipped", graded))
            continue
        score, progress = graded
        shown, note = f"{score:g} / {maximum:g}", "manual grading pending" if progress == "PendingManual" else ""
        if student not in known:
            rows.append(PushRow(student, shown, "refused", "not known to the LMS: no launch or roster sync names them"))
        elif held.get(known[student]) == (score, maximum) and sent.get(student) == [score, maximum, progress]:
            rows.append(PushRow(student, shown, "unchanged", note or "the LMS holds this score"))
        else:
            try:
                platform.post_score(item, known[student], score, maximum, progress)
            except LtiError as exc:
                rows.append(PushRow(student, shown, "refused", str(exc)))
                continue
            sent[student] = [score, maximum, progress]
            ltistate.write(state_dir, "pushed.json", ledger)  # after each score: a run cut short keeps what it sent
            rows.append(PushRow(student, shown, "sent", note))
    return rows
