"""Due dates, extensions and late penalties, kept where nbgrader keeps them.

- A due date is the gradebook's `Assignment.duedate` (naive UTC, as nbgrader stores it), given
  in `course.timezone`. Release also writes it, as students read it, to the exchange
  (`<offering>/deadlines.json`, shown in their Assignments tab by d2lhub/image/duedates.py) and
  as a first markdown cell of the released notebooks (never into the instructor's source).
- An extension is the gradebook's `SubmittedAssignment.extension` (nbgrader's `grant_extension`),
  so nbgrader's own `total_seconds_late` counts it. The student reads it from
  `<offering>/extensions/<student>.json`: owned by their uid, mode 0400, in a folder nobody can list.
- The late policy (`grading.late`) is a LateSubmissionPlugin on nbgrader's AssignLatePenalties,
  which autograde runs; feedback and the grades export say how late and what it cost.
- Lateness is nbgrader's submission timestamp, which the student's submit writes: collect holds
  it to the file's change time (`vouch_timestamp`), so nobody hands in work dated before it existed.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from html import escape
from pathlib import Path
from zoneinfo import ZoneInfo

import nbformat
import requests
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.plugins import LateSubmissionPlugin
from nbgrader.utils import parse_utc
from traitlets import Dict
from traitlets.config import Config

from d2lhub import hubapi
from d2lhub.config import Classroom
from d2lhub.courses import Offering
from d2lhub.deadlines_config import Late
from d2lhub.grading.errors import GradingError
from d2lhub.grading.layout import (
    course_root,
    exchange_dir,
    extension_file,
    inbound_dir,
)

FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d")
DUE_CELL_TAG = "d2lhub-due"
DEADLINES_FILE = "deadlines.json"


# Times ----------------------------------------------------------------------


def parse_when(text: str, zone: str, option: str = "--due") -> datetime:
    """A moment given in the course's zone (a date alone means 23:59 that day), as an aware UTC datetime."""
    for pattern in FORMATS:
        try:
            moment = datetime.strptime(text.strip(), pattern)
        except ValueError:
            continue
        if pattern == "%Y-%m-%d":
            moment = moment.replace(hour=23, minute=59)
        return moment.replace(tzinfo=ZoneInfo(zone)).astimezone(timezone.utc)
    raise GradingError(f"{option}: {text!r} is not a date and time like 2027-03-01 23:59 (read in {zone})")


def shown(moment: datetime, zone: str) -> str:
    """`2027-03-01 23:59 (Europe/Berlin)`: a moment as students and instructors read it, in a course's zone."""
    return f"{moment.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M} ({zone})"


def from_gradebook(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=timezone.utc) if moment is not None else None


def span(seconds: float) -> str:
    """`1 day 2 h 5 min`: how late, to the minute (a started minute counts)."""
    minutes = -(-int(seconds) // 60)
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{days} day{'s' if days != 1 else ''}" if days else "", f"{hours} h" if hours else "",
             f"{minutes} min" if minutes else ""]
    return " ".join(p for p in parts if p) or "0 min"


# The gradebook --------------------------------------------------------------


def open_gradebook(classroom: Classroom, offering: Offering) -> Gradebook:
    path = course_root(classroom, offering) / "gradebook.db"
    if not path.is_file():
        raise GradingError(f"nothing has been released in {offering.ref} yet: run `d2lhub assignment release NAME` first")
    return Gradebook(f"sqlite:///{path}", offering.id)


def record_due(gb: Gradebook, name: str, due: datetime | None) -> datetime | None:
    """Set the assignment's due date when one is given; the one it has now either way."""
    if due is not None:
        gb.update_or_create_assignment(name, duedate=due.astimezone(timezone.utc).replace(tzinfo=None))
    return from_gradebook(gb.find_assignment(name).duedate)


# What students read ---------------------------------------------------------


def due_cell(due: datetime, classroom: Classroom, offering: Offering) -> nbformat.NotebookNode:
    late = classroom.grading.late
    text = (f"**Due: {shown(due, offering.course.timezone)}**\n\n"
            f"Late submissions: {late.describe()}. An extension given to you shows in the Assignments tab.")
    return nbformat.v4.new_markdown_cell(text, metadata={"tags": [DUE_CELL_TAG], "deletable": False})


def mark_release(classroom: Classroom, offering: Offering, name: str, due: datetime | None) -> None:
    """Put (or take away) the due-date cell at the top of each released notebook of `name`."""
    for path in sorted((course_root(classroom, offering) / "release" / name).glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        notebook.cells = [c for c in notebook.cells if DUE_CELL_TAG not in c.get("metadata", {}).get("tags", [])]
        if due is not None:
            notebook.cells.insert(0, due_cell(due, classroom, offering))
        nbformat.write(notebook, path)


def write_private(path: Path, data: dict, mode: int = 0o644, uid: int = 0) -> None:
    """Replace `path` at once (students never read half a file), owned by `uid`, with `mode`."""
    temporary = path.with_name(f".{path.name}.new")
    temporary.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.chown(temporary, uid, 0)
    os.chmod(temporary, mode)
    temporary.replace(path)


def publish_due_dates(classroom: Classroom, offering: Offering, gb: Gradebook) -> None:
    """`<offering>/deadlines.json` in the exchange: every due date, as students' Assignments tab shows it."""
    zone = offering.course.timezone
    due = {a.name: {"due": from_gradebook(a.duedate).isoformat(), "shown": shown(from_gradebook(a.duedate), zone)}
           for a in gb.assignments if a.duedate is not None}
    write_private(exchange_dir(classroom, offering) / DEADLINES_FILE, due)


def release_due_date(classroom: Classroom, offering: Offering, gb: Gradebook, name: str,
                     due: datetime | None) -> datetime | None:
    """At release, after nbgrader generated the student version: gradebook, notebooks, exchange."""
    due = record_due(gb, name, due)
    mark_release(classroom, offering, name, due)
    publish_due_dates(classroom, offering, gb)
    return due


# Extensions -----------------------------------------------------------------


def check_student(classroom: Classroom, gb: Gradebook, student: str, uids: dict[str, int]) -> None:
    """A student who has a home volume, is in the gradebook, or is a user of the hub; else a GradingError."""
    if student in uids or student in {s.id for s in gb.students}:
        return
    try:
        response = hubapi.api(classroom, f"/users/{student}")
    except (requests.RequestException, OSError) as exc:
        raise GradingError(f"{student} is not in the gradebook, and the hub does not answer to say whether "
                           f"they are a user ({exc})") from None
    if response.status_code != 200:
        raise GradingError(f"{student} is neither in the gradebook nor a user of this hub")


def extend(classroom: Classroom, offering: Offering, name: str, student: str, uids: dict[str, int],
           until: str | None = None, days: float | None = None) -> datetime:
    """Give `student` until a moment (or N more days) for `name` in `offering`; returns their new due date."""
    if (until is None) == (days is None):
        raise GradingError("give exactly one of --until and --days")
    zone = offering.course.timezone
    with open_gradebook(classroom, offering) as gb:
        try:
            due = from_gradebook(gb.find_assignment(name).duedate)
        except MissingEntry:
            raise GradingError(f"{name} has not been released: run `d2lhub assignment release {name} --due ...`") from None
        if due is None:
            raise GradingError(f"{name} has no due date: release it again with --due")
        extension = (parse_when(until, zone, "--until") - due) if until is not None else timedelta(days=days)
        if extension <= timedelta(0):
            raise GradingError(f"the new due date must be after {name}'s due date, {shown(due, zone)}")
        check_student(classroom, gb, student, uids)
        gb.update_or_create_student(student)  # an account of classroom.yaml is in the gradebook once it submits
        gb.update_or_create_submission(name, student)
        gb.grant_extension(name, student, minutes=extension.total_seconds() / 60)
        granted = {s.assignment.name: shown(s.duedate.replace(tzinfo=timezone.utc), zone)
                   for s in gb.find_student(student).submissions if s.extension and s.assignment.duedate}
    path = extension_file(classroom, student, offering)
    path.parent.mkdir(exist_ok=True)
    os.chmod(path.parent, 0o711)  # students read their own file by name, never list the others
    # Theirs alone: by their uid (their home volume says it); before their first start, root's until the
    # spawner hands it over (d2lhub.grading.layout.claim_extensions).
    write_private(path, granted, mode=0o400, uid=uids.get(student, 0))
    return due + extension


# Who submitted, and when ----------------------------------------------------


@dataclass
class Standing:
    student: str
    due: datetime | None  # their own: the assignment's, plus any extension
    extended: bool
    submitted: datetime | None  # their latest submission, collected or still in the inbound

    @property
    def seconds_late(self) -> float:
        if self.due is None or self.submitted is None:
            return 0.0
        return max(0.0, (self.submitted - self.due).total_seconds())


def submission_times(classroom: Classroom, offering: Offering, name: str) -> dict[str, datetime]:
    """student -> the time of their latest submission of `name` (nbgrader's timestamps, UTC)."""
    found: dict[str, datetime] = {}

    def note(student: str, stamp: str) -> None:
        try:
            moment = parse_utc(stamp.strip()).replace(tzinfo=timezone.utc)
        except (ValueError, TypeError, OverflowError):
            return
        if student not in found or moment > found[student]:
            found[student] = moment

    for stamp in (course_root(classroom, offering) / "submitted").glob(f"*/{name}/timestamp.txt"):
        note(stamp.parent.parent.name, stamp.read_text())
    inbound = inbound_dir(classroom, offering)
    if inbound.is_dir():
        for entry in inbound.glob(f"*+{name}+*"):
            parts = entry.name.split("+")
            if len(parts) >= 3 and parts[1] == name:
                note(parts[0], parts[2])
    return found


def vouch_timestamp(entry: Path, slack: timedelta = timedelta(minutes=5)) -> str | None:
    """Keep a submission's `timestamp.txt` honest; returns what was corrected, or None.

    nbgrader's submit writes the student's own claim of when they submitted, and the inbound is theirs
    to write in: a claim older than the file itself (its change time, which only the kernel sets) by
    more than `slack` is replaced by that change time, as nbgrader's format writes it.
    """
    stamp = entry / "timestamp.txt"
    if not stamp.is_file() or stamp.is_symlink():
        return None
    changed = datetime.fromtimestamp(stamp.lstat().st_ctime, timezone.utc)
    text = stamp.read_text(errors="replace").strip()
    try:
        claimed = parse_utc(text).replace(tzinfo=timezone.utc)
    except (ValueError, TypeError, OverflowError):
        claimed = None
    if claimed is not None and claimed >= changed - slack:
        return None
    stamp.write_text(changed.strftime("%Y-%m-%d %H:%M:%S.%f UTC"))
    return f"timestamp.txt said {text[:40]!r}, the file was written {changed:%Y-%m-%d %H:%M:%S} UTC: that time counts"


def standings(classroom: Classroom, offering: Offering, gb: Gradebook, name: str) -> list[Standing]:
    due = from_gradebook(gb.find_assignment(name).duedate)
    times = submission_times(classroom, offering, name)
    rows = []
    for student in sorted({s.id for s in gb.students} | set(times)):
        extension = None
        try:
            extension = gb.find_submission(name, student).extension
        except MissingEntry:
            pass
        own = due + extension if due is not None and extension else due
        rows.append(Standing(student, own, bool(extension), times.get(student)))
    return rows


@dataclass
class Overview:
    name: str
    due: str
    submitted: int
    late: int
    missing: int
    extensions: int


def overview(classroom: Classroom, offering: Offering, names: list[str]) -> list[Overview]:
    """Each assignment: its due date and how many students submitted, late, not at all, with an extension."""
    if not (course_root(classroom, offering) / "gradebook.db").is_file():
        return [Overview(n, "not released", 0, 0, 0, 0) for n in names]
    rows = []
    with open_gradebook(classroom, offering) as gb:
        released = {a.name: a for a in gb.assignments}
        for name in sorted(set(names) | set(released)):
            if name not in released:
                rows.append(Overview(name, "not released", 0, 0, 0, 0))
                continue
            due = from_gradebook(released[name].duedate)
            table = standings(classroom, offering, gb, name)
            rows.append(Overview(
                name, f"{due.astimezone(ZoneInfo(offering.course.timezone)):%Y-%m-%d %H:%M}" if due else "none",
                sum(1 for s in table if s.submitted), sum(1 for s in table if s.seconds_late > 0),
                sum(1 for s in table if not s.submitted), sum(1 for s in table if s.extended),
            ))
    return rows


# Late policy: nbgrader's plugin, the feedback note, the export columns ------


class ClassroomLatePolicy(LateSubmissionPlugin):
    """grading.late, through nbgrader's LateSubmissionPlugin interface (AssignLatePenalties calls it at autograde)."""

    late = Dict(help="grading.late from classroom.yaml").tag(config=True)

    def late_submission_penalty(self, student_id: str, score: float, total_seconds_late: float) -> float | None:
        return Late(**self.late).penalty(score, total_seconds_late)


def configure(config: Config, classroom: Classroom) -> None:
    config.AssignLatePenalties.plugin_class = ClassroomLatePolicy
    config.ClassroomLatePolicy.late = classroom.grading.late.model_dump()


def lateness_note(standing: Standing, penalty: float, late: Late, zone: str) -> str:
    """What a student's feedback says about their submission's time (empty when there is no due date)."""
    if standing.due is None or standing.submitted is None:
        return ""
    whose = "your extended due date" if standing.extended else "the due date"
    if standing.seconds_late <= 0:
        return f"Submitted on time: {shown(standing.submitted, zone)}, {whose} was {shown(standing.due, zone)}."
    return (f"Submitted late, by {span(standing.seconds_late)}: {shown(standing.submitted, zone)}, "
            f"{whose} was {shown(standing.due, zone)}. Late policy: {late.describe()}. "
            f"Penalty: {penalty:g} point(s).")


def annotate_feedback(classroom: Classroom, offering: Offering, name: str) -> None:
    """Put the lateness note at the top of each student's rendered feedback, before it is released."""
    with open_gradebook(classroom, offering) as gb:
        for standing in standings(classroom, offering, gb, name):
            try:
                penalty = float(gb.find_submission(name, standing.student).late_submission_penalty or 0)
            except MissingEntry:
                penalty = 0.0
            note = lateness_note(standing, penalty, classroom.grading.late, offering.course.timezone)
            for page in (course_root(classroom, offering) / "feedback" / standing.student / name).glob("*.html"):
                html = re.sub(r'\s*<p class="d2lhub-lateness">.*?</p>', "", page.read_text(), flags=re.S)
                if note:
                    block = (f'<p class="d2lhub-lateness" style="font-size:1.2em;padding:.5em;border:1px solid #999">'
                             f"{escape(note)}</p>")
                    html = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + block, html, count=1)
                page.write_text(html)


def export_columns(gb: Gradebook, name: str, student: str) -> dict[str, object]:
    """A student's row in the grades export for `name`: score after penalty, how late, the penalty."""
    try:
        submission = gb.find_submission(name, student)
    except MissingEntry:
        return {name: 0.0, f"{name} late by": "", f"{name} penalty": 0.0}
    penalty = float(submission.late_submission_penalty or 0)
    late = submission.total_seconds_late if submission.timestamp else 0
    return {name: float(submission.score or 0) - penalty, f"{name} late by": span(late) if late > 0 else "",
            f"{name} penalty": penalty}
