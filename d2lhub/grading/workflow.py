"""Release, collect, sandboxed autograde, feedback and grades export, on nbgrader's own apps.

Identity: nbgrader names a submission after `$JUPYTERHUB_USER`, which a
student controls. Every student runs as a uid of their own (the spawner), so
`collect` accepts a submission only when it and every file in it belong to
the uid of the user it names, and holds no links; the rest is moved aside
and reported. Autograde replaces nbgrader's `Execute` with the sandbox's
(d2lhub.grading.sandbox).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import stat
import sys
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Callable

import docker
import nbformat
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.apps.api import NbGraderAPI
from nbgrader.converters import Autograde
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import Execute
from nbgrader.utils import capture_log, temp_attrs
from traitlets.config import Config, PyFileConfigLoader

from d2lhub import engine, identity
from d2lhub.config import Classroom
from d2lhub.courses import Offering
from d2lhub.grading import deadlines
from d2lhub.grading.errors import GradingError
from d2lhub.grading.layout import (
    course_root,
    ensure_exchange,
    exchange_dir,
    exchange_root,
    inbound_dir,
    share_with_graders,
)
from d2lhub.grading.sandbox import Sandbox, SandboxExecute, SandboxSchedule

Advance = Callable[[str], None]
# nbgrader 0.9.6 predates SQLAlchemy 2's autoflush warnings; they are noise on every autograde.
warnings.filterwarnings("ignore", message=".*not in session.*")


def nbgrader_config(classroom: Classroom, offering: Offering) -> Config:
    """The instructor's assignments/nbgrader_config.py (the offering's course's), re-rooted at the
    offering's course directory and exchange."""
    config = Config()
    assignments = offering.course.assignments
    if (assignments / "nbgrader_config.py").is_file():
        config.merge(PyFileConfigLoader("nbgrader_config.py", path=str(assignments)).load_config())
    config.CourseDirectory.root = str(course_root(classroom, offering))
    config.CourseDirectory.course_id = offering.id
    config.Exchange.root = str(exchange_root(classroom))
    config.ExchangeCollect.check_owner = False  # d2lhub checks uids itself, before collect
    config.Autograde.create_student = True
    deadlines.configure(config, classroom)  # grading.late, as nbgrader's late-submission plugin
    return config


def nbgrader_api(classroom: Classroom, offering: Offering) -> NbGraderAPI:
    ensure_exchange(classroom, offering)
    # nbgrader creates gradebook.db by running `alembic` from PATH.
    os.umask(0o002)  # what the CLI writes in the course folder stays writable for the graders' group
    share_with_graders(classroom, offering, everything=True)
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    config = nbgrader_config(classroom, offering)
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


def checked(result: dict, step: str) -> dict:
    if not result.get("success"):
        detail = (result.get("error") or result.get("log") or "").strip().splitlines()
        raise GradingError(f"{step} failed: {detail[-1] if detail else 'no reason given'}")
    return result


def gradebook(classroom: Classroom, offering: Offering) -> Gradebook:
    nbgrader_api(classroom, offering)  # makes sure PATH and folders are right
    return Gradebook(f"sqlite:///{course_root(classroom, offering) / 'gradebook.db'}", offering.id)


def submitted_students(classroom: Classroom, offering: Offering, name: str) -> list[str]:
    return sorted(p.parent.name for p in (course_root(classroom, offering) / "submitted").glob(f"*/{name}") if p.is_dir())


def assignment_names(offering: Offering) -> list[str]:
    """The exercises of the offering's course: its sections share them."""
    source = offering.course.assignments / "source"
    return sorted(p.name for p in source.iterdir() if p.is_dir()) if source.is_dir() else []


# Release --------------------------------------------------------------------


def release(classroom: Classroom, offering: Offering, name: str, due: datetime | None = None) -> tuple[Path, datetime | None]:
    """Copy the source in, make the student version (with its due date: `due`, else the one it had),
    put it in the offering's outbound; returns where, and the due date."""
    source = offering.course.assignments / "source" / name
    if not source.is_dir():
        known = ", ".join(assignment_names(offering)) or "none"
        raise GradingError(f"no assignment {name!r} in {source.parent} (known: {known})")
    api = nbgrader_api(classroom, offering)
    target = course_root(classroom, offering) / "source" / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    checked(api.generate_assignment(name, force=True), f"generate_assignment {name}")
    with gradebook(classroom, offering) as gb:
        due = deadlines.release_due_date(classroom, offering, gb, name, due)
    outbound = exchange_dir(classroom, offering) / "outbound" / name
    shutil.rmtree(outbound, ignore_errors=True)  # re-release replaces the old version
    checked(api.release_assignment(name), f"release_assignment {name}")
    return outbound, due


# Collect --------------------------------------------------------------------


def student_uids(classroom: Classroom, client: docker.DockerClient | None = None) -> dict[str, int]:
    """username -> uid, from the classroom's registry (d2lhub.identity), which first adopts the uids
    the home volumes' labels record for names it lacks."""
    return identity.seed(classroom, client or engine.docker_client())


def ownership_problem(entry: Path, username: str, uids: dict[str, int]) -> str | None:
    """Why `entry` cannot be `username`'s own submission, or None when it is."""
    expected = uids.get(username)
    if expected is None:
        return f"{username} is not a student of this hub (no uid in its registry)"
    for path in [entry, *entry.rglob("*")]:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode) or not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
            return f"{path.relative_to(entry.parent)} is not a plain file"
        if info.st_uid != expected:
            return f"{path.relative_to(entry.parent)} belongs to uid {info.st_uid}, not {username} ({expected})"
    return None


@dataclass
class CollectReport:
    collected: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (inbound entry, reason)
    restamped: list[tuple[str, str]] = field(default_factory=list)  # (inbound entry, what was corrected)


def collect(classroom: Classroom, offering: Offering, name: str, advance: Advance | None = None) -> CollectReport:
    """Set forged submissions aside, then let nbgrader collect the latest genuine one per student
    (of this offering's inbound only)."""
    api = nbgrader_api(classroom, offering)
    uids = student_uids(classroom)
    report = CollectReport()
    entries = sorted(inbound_dir(classroom, offering).glob(f"*+{name}+*"))
    rejected_dir = course_root(classroom, offering) / "rejected"
    for entry in entries:
        username = entry.name.rsplit("+", 3)[0]
        problem = ownership_problem(entry, username, uids)
        if problem:
            rejected_dir.mkdir(parents=True, exist_ok=True)
            shutil.move(str(entry), str(rejected_dir / entry.name))
            report.rejected.append((entry.name, problem))
        elif correction := deadlines.vouch_timestamp(entry):
            report.restamped.append((entry.name, correction))
        if advance:
            advance(entry.name)
    checked(api.collect(name, update=True), f"collect {name}")
    report.collected = submitted_students(classroom, offering, name)
    return report


# Autograde ------------------------------------------------------------------


@dataclass
class Graded:
    student: str
    score: float
    max_score: float
    reason: str | None


def notes_file(classroom: Classroom, offering: Offering, name: str) -> Path:
    return course_root(classroom, offering) / "notes" / f"{name}.json"


def autograde(classroom: Classroom, offering: Offering, name: str, jobs: int = 0,
              advance: Advance | None = None) -> list[Graded]:
    """Grade every collected submission; one failing submission never stops the others."""
    api = nbgrader_api(classroom, offering)
    submitted = course_root(classroom, offering) / "submitted"
    students = submitted_students(classroom, offering, name)
    sandbox = Sandbox(classroom, course_root(classroom, offering), jobs or classroom.grading.jobs or os.cpu_count() or 1)
    notes: dict[str, str] = {}
    failures: dict[str, str] = {}

    def run(student: str, replace_execute) -> dict:
        app = Autograde(coursedir=api.coursedir, parent=api)
        app.force = True
        app.create_student = True
        app.autograde_preprocessors = [replace_execute if step is Execute else step for step in app.autograde_preprocessors]
        with temp_attrs(api.coursedir, assignment_id=name, student_id=student):
            return capture_log(app)

    try:
        for student in students:  # nbgrader sanitizes; executions start at once, `jobs` at a time
            run(student, SandboxSchedule(sandbox))
        for student in students:  # nbgrader grades, taking each execution from the sandbox
            if not run(student, SandboxExecute(sandbox, notes)).get("success"):
                failures[student] = unreadable_reason(submitted / student / name)
            if advance:
                advance(student)
    finally:
        sandbox.pool.shutdown(wait=True, cancel_futures=True)
    notes.update(failures)
    path = notes_file(classroom, offering, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(notes, indent=1, sort_keys=True))
    graded = []
    with gradebook(classroom, offering) as gb:
        for student in students:
            try:
                submission = gb.find_submission(name, student)
                score, max_score = submission.score - submission.late_submission_penalty, submission.max_score
                if submission.late_submission_penalty:
                    notes.setdefault(student, f"late: -{submission.late_submission_penalty:g} point(s)")
            except MissingEntry:
                score, max_score = 0.0, gb.find_assignment(name).max_score
            graded.append(Graded(student, float(score or 0), float(max_score), notes.get(student)))
    return graded


def unreadable_reason(folder: Path) -> str:
    for path in sorted(folder.glob("*.ipynb")):
        try:
            nbformat.validate(nbformat.read(path, as_version=4))
        except Exception as exc:  # nbformat raises several kinds for broken files
            return f"{path.name} is not a valid notebook ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
    return "nbgrader could not grade this submission"


# Feedback and grades --------------------------------------------------------


def feedback(classroom: Classroom, offering: Offering, name: str) -> list[str]:
    """Render feedback (a note for submissions nbgrader could not read) and release it; returns the students."""
    api = nbgrader_api(classroom, offering)
    root = course_root(classroom, offering)
    try:
        notes = json.loads(notes_file(classroom, offering, name).read_text())
    except FileNotFoundError:
        raise GradingError(f"{name} has not been autograded yet in {offering.ref}: run "
                           f"`d2lhub assignment autograde {name} --course {offering.ref}`") from None
    checked(api.generate_feedback(name, force=True), f"generate_feedback {name}")
    deadlines.annotate_feedback(classroom, offering, name)
    for student, reason in notes.items():
        if (root / "autograded" / student / name).is_dir():
            continue  # nbgrader's feedback shows the autograder's note cell
        target = root / "feedback" / student / name
        target.mkdir(parents=True, exist_ok=True)
        for notebook in (root / "submitted" / student / name).glob("*.ipynb"):
            (target / f"{notebook.stem}.html").write_text(
                f"<!doctype html><title>{escape(notebook.stem)}</title><h1>{escape(notebook.stem)}: 0 points</h1>"
                f"<p>Autograder: {escape(reason)}</p>"
            )
        for marker in ("timestamp.txt", "submission_secret.txt"):  # release_feedback addresses feedback by these
            if (root / "submitted" / student / name / marker).exists():
                shutil.copy(root / "submitted" / student / name / marker, target / marker)
    checked(api.release_feedback(name), f"release_feedback {name}")
    return sorted(p.parent.name for p in (root / "feedback").glob(f"*/{name}"))


def grades(classroom: Classroom, offering: Offering) -> tuple[list[str], list[dict]]:
    """One row per student of the offering: names, email, per assignment the points (0 when missing, late
    penalty taken), how late and the penalty, and the total."""
    with gradebook(classroom, offering) as gb:
        assignments = sorted(a.name for a in gb.assignments)
        rows = []
        for student in sorted(gb.students, key=lambda s: s.id):
            row = {"username": student.id, "first_name": student.first_name or "",
                   "last_name": student.last_name or "", "email": student.email or ""}
            for assignment in assignments:
                row.update(deadlines.export_columns(gb, assignment, student.id))
            row["total"] = sum(row[a] for a in assignments)
            rows.append(row)
    late_columns = [c for a in assignments for c in (a, f"{a} late by", f"{a} penalty")]
    return ["username", "first_name", "last_name", "email", *late_columns, "total"], rows


def grades_csv(classroom: Classroom, offering: Offering) -> str:
    columns, rows = grades(classroom, offering)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
