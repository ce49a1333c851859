"""Release, collect, sandboxed autograde, feedback and grades export, on nbgrader's own apps.

Layout (host side, all under `state_dir/grading/`):
- `course/`   nbgrader's course directory: gradebook.db, source/, release/,
              submitted/, autograded/, feedback/, plus `rejected/` (forged
              submissions set aside at collect) and `notes/` (why a
              submission could not be run, kept for its feedback);
- `exchange/` nbgrader's filesystem exchange. Student containers mount it
              read-only, and only `<course>/inbound` (mode 1733: create,
              never list, never rename another's entry) read-write.

Identity: nbgrader names a submission after `$JUPYTERHUB_USER`, which a
student controls. Every student runs as uid `uid_base + hub id` (spawner), so
`collect` accepts a submission only when it and every file in it belong to
the uid of the user it names, and holds no links; the rest is moved aside
and reported. Autograde replaces nbgrader's `Execute` with `SandboxExecute`,
which runs each sanitized notebook in a throwaway container (no network,
capped memory, CPU, processes, time and output, read-only inputs).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import stat
import sys
import tempfile
import uuid
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Callable

import docker
import nbformat
import requests
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.apps.api import NbGraderAPI
from nbgrader.converters import Autograde
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from nbgrader.utils import capture_log, temp_attrs
from traitlets.config import Config, PyFileConfigLoader

from d2lhub import bootstrap
from d2lhub.config import Classroom

EXCHANGE_MOUNT = "/srv/nbgrader/exchange"
STUDENT_CONFIG_MOUNT = "/etc/jupyter/nbgrader_config.py"
RUNNER = Path(__file__).with_name("sandbox_runner.py")
RUNNER_MOUNT = "/opt/d2lhub-sandbox/run.py"
SANDBOX_USER = "0:0"  # with every capability dropped but the two the runner needs to run the kernel as nobody
SANDBOX_CAPS = ["SETUID", "SETGID", "KILL"]  # KILL: to interrupt and stop a kernel of another uid
UID_LABEL = "org.d2lhub.uid"
USER_LABEL = "org.d2lhub.user"
Advance = Callable[[str], None]
# nbgrader 0.9.6 predates SQLAlchemy 2's autoflush warnings; they are noise on every autograde.
warnings.filterwarnings("ignore", message=".*not in session.*")


# What students' nbgrader reads (mounted read-only at /etc/jupyter). nbgrader's submit leaves a
# submission world-readable (0644 files in a 0777 folder, hidden only by its unlistable name);
# this submit closes it to its owner. The instructor's collect runs as root on the host.
STUDENT_CONFIG = """# Written by d2lhub: the course, its exchange, and private submissions.
import os

from nbgrader.exchange.default.submit import ExchangeSubmit


class PrivateSubmit(ExchangeSubmit):
    def copy_files(self):
        super().copy_files()
        dest = os.path.join(self.inbound_path, self.assignment_filename)
        for folder, _, files in os.walk(dest):
            for name in files:
                os.chmod(os.path.join(folder, name), 0o600)
            os.chmod(folder, 0o700)


c = get_config()  # noqa: F821
c.CourseDirectory.course_id = {course!r}
c.Exchange.root = {exchange!r}
c.ExchangeFactory.submit = PrivateSubmit
"""


# What instructors' and TAs' nbgrader reads: the course folder (mounted read-write, shared
# through the graders' group) so the formgrader in their own server sees every submission.
GRADER_CONFIG = """# Written by d2lhub: the formgrader's course folder and exchange.
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = {course!r}
c.CourseDirectory.root = {root!r}
c.Exchange.root = {exchange!r}
"""
GRADER_COURSE_MOUNT = "/home/jovyan/course"  # the formgrader needs it inside the server root


class GradingError(Exception):
    """A grading step failed as a whole; the message says which and why."""


def group_names(classroom: Classroom) -> dict[str, str]:
    """The hub groups nbgrader's JupyterHub integration expects for a course."""
    course = classroom.course.id
    return {"students": f"nbgrader-{course}", "graders": f"formgrade-{course}"}


def grading_dir(classroom: Classroom) -> Path:
    return classroom.hub.state_dir / "grading"


def course_root(classroom: Classroom) -> Path:
    return grading_dir(classroom) / "course"


def exchange_root(classroom: Classroom) -> Path:
    return grading_dir(classroom) / "exchange"


def inbound_dir(classroom: Classroom) -> Path:
    return exchange_root(classroom) / classroom.course.id / "inbound"


def student_config_file(classroom: Classroom) -> Path:
    return grading_dir(classroom) / "student_nbgrader_config.py"


def ensure_exchange(classroom: Classroom) -> None:
    """Create the exchange with its multi-user modes, and the config students' nbgrader reads."""
    course = exchange_root(classroom) / classroom.course.id
    for path, mode in (
        (exchange_root(classroom), 0o755),
        (course, 0o755),
        (course / "outbound", 0o755),
        (course / "feedback", 0o711),
        (course / "inbound", 0o1733),
    ):
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, 0, 0)
        os.chmod(path, mode)
    os.chmod(grading_dir(classroom), 0o755)
    share_with_graders(classroom)
    write_config(student_config_file(classroom), STUDENT_CONFIG.format(course=classroom.course.id, exchange=EXCHANGE_MOUNT))
    write_config(
        grader_config_file(classroom),
        GRADER_CONFIG.format(course=classroom.course.id, root=GRADER_COURSE_MOUNT, exchange=EXCHANGE_MOUNT),
    )


def write_config(target: Path, text: str) -> None:
    if not target.exists() or target.read_text() != text:
        target.write_text(text)
        os.chmod(target, 0o644)


def graders_gid(classroom: Classroom) -> int:
    """The group instructors' and TAs' servers run with: no student uid (uid_base + id) can equal it."""
    return classroom.spawner.uid_base


def share_with_graders(classroom: Classroom, everything: bool = False) -> None:
    """The course folder belongs to root and the graders' group (setgid: new files stay in it); students never see it.

    Spawns need only the folder itself; the walk over its contents (files written before the
    group-writable umask) is for the grading commands, not every student's start.
    """
    root, gid = course_root(classroom), graders_gid(classroom)
    root.mkdir(parents=True, exist_ok=True)
    for path in (root, *root.rglob("*")) if everything else (root,):
        if path.is_symlink():
            continue
        os.chown(path, -1, gid)
        mode = path.stat().st_mode
        os.chmod(path, (mode | 0o2070) & ~0o007 if path.is_dir() else (mode | 0o060) & ~0o007)


def grader_config_file(classroom: Classroom) -> Path:
    return grading_dir(classroom) / "grader_nbgrader_config.py"


# nbgrader insists on a writable exchange root; each container gets its own (a tmpfs, see the spawner).
EXCHANGE_ROOT_TMPFS = {EXCHANGE_MOUNT: "size=1m,mode=1777"}


def passwd_file(classroom: Classroom, uid: int) -> Path:
    """An /etc/passwd naming the student's uid `jovyan`: nbgrader then takes their name from $JUPYTERHUB_USER
    (and finds their own files theirs); which user they are is still decided by the uid, at collect."""
    path = grading_dir(classroom) / "passwd" / str(uid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        f"jovyan:x:{uid}:100:jovyan:/home/jovyan:/bin/bash\n"
    )
    os.chmod(path, 0o644)
    return path


def student_mounts(classroom: Classroom, uid: int, grader: bool = False) -> dict[str, dict]:
    """Docker binds for a server: the course's exchange read-only, its inbound writable; an
    instructor's or TA's server also gets the course folder read-write, for the formgrader."""
    ensure_exchange(classroom)
    course = classroom.course.id
    mounts = {
        str(passwd_file(classroom, uid)): {"bind": "/etc/passwd", "mode": "ro"},
        str(exchange_root(classroom) / course): {"bind": f"{EXCHANGE_MOUNT}/{course}", "mode": "ro"},
        str(inbound_dir(classroom)): {"bind": f"{EXCHANGE_MOUNT}/{classroom.course.id}/inbound", "mode": "rw"},
    }
    if grader:
        mounts[str(course_root(classroom))] = {"bind": GRADER_COURSE_MOUNT, "mode": "rw"}
        mounts[str(grader_config_file(classroom))] = {"bind": STUDENT_CONFIG_MOUNT, "mode": "ro"}
    else:
        mounts[str(student_config_file(classroom))] = {"bind": STUDENT_CONFIG_MOUNT, "mode": "ro"}
    return mounts


def nbgrader_config(classroom: Classroom) -> Config:
    """The instructor's assignments/nbgrader_config.py, re-rooted at the course directory."""
    config = Config()
    assignments = classroom.course.assignments
    if (assignments / "nbgrader_config.py").is_file():
        config.merge(PyFileConfigLoader("nbgrader_config.py", path=str(assignments)).load_config())
    config.CourseDirectory.root = str(course_root(classroom))
    config.CourseDirectory.course_id = classroom.course.id
    config.Exchange.root = str(exchange_root(classroom))
    config.ExchangeCollect.check_owner = False  # d2lhub checks uids itself, before collect
    config.Autograde.create_student = True
    return config


def nbgrader_api(classroom: Classroom) -> NbGraderAPI:
    ensure_exchange(classroom)
    # nbgrader creates gradebook.db by running `alembic` from PATH.
    os.umask(0o002)  # what the CLI writes in the course folder stays writable for the graders' group
    share_with_graders(classroom, everything=True)
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    config = nbgrader_config(classroom)
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


def checked(result: dict, step: str) -> dict:
    if not result.get("success"):
        detail = (result.get("error") or result.get("log") or "").strip().splitlines()
        raise GradingError(f"{step} failed: {detail[-1] if detail else 'no reason given'}")
    return result


def gradebook(classroom: Classroom) -> Gradebook:
    nbgrader_api(classroom)  # makes sure PATH and folders are right
    return Gradebook(f"sqlite:///{course_root(classroom) / 'gradebook.db'}", classroom.course.id)


def submitted_students(classroom: Classroom, name: str) -> list[str]:
    return sorted(p.parent.name for p in (course_root(classroom) / "submitted").glob(f"*/{name}") if p.is_dir())


def assignment_names(classroom: Classroom) -> list[str]:
    source = classroom.course.assignments / "source"
    return sorted(p.name for p in source.iterdir() if p.is_dir()) if source.is_dir() else []


# Release --------------------------------------------------------------------


def release(classroom: Classroom, name: str) -> Path:
    """Copy the source in, make the student version, put it in the exchange's outbound."""
    source = classroom.course.assignments / "source" / name
    if not source.is_dir():
        known = ", ".join(assignment_names(classroom)) or "none"
        raise GradingError(f"no assignment {name!r} in {source.parent} (known: {known})")
    api = nbgrader_api(classroom)
    target = course_root(classroom) / "source" / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    checked(api.generate_assignment(name, force=True), f"generate_assignment {name}")
    outbound = exchange_root(classroom) / classroom.course.id / "outbound" / name
    shutil.rmtree(outbound, ignore_errors=True)  # re-release replaces the old version
    checked(api.release_assignment(name), f"release_assignment {name}")
    return outbound


# Collect --------------------------------------------------------------------


def student_uids(classroom: Classroom, client: docker.DockerClient | None = None) -> dict[str, int]:
    """username -> uid, from the labels the spawner puts on each student's home volume."""
    client = client or bootstrap.docker_client()
    uids = {}
    for volume in client.volumes.list(filters=bootstrap.labelled(classroom.spawner.instance)):
        labels = volume.attrs.get("Labels") or {}
        if USER_LABEL in labels and UID_LABEL in labels:
            uids[labels[USER_LABEL]] = int(labels[UID_LABEL])
    return uids


def ownership_problem(entry: Path, username: str, uids: dict[str, int]) -> str | None:
    """Why `entry` cannot be `username`'s own submission, or None when it is."""
    expected = uids.get(username)
    if expected is None:
        return f"{username} is not a student of this hub (no home volume)"
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


def collect(classroom: Classroom, name: str, advance: Advance | None = None) -> CollectReport:
    """Set forged submissions aside, then let nbgrader collect the latest genuine one per student."""
    api = nbgrader_api(classroom)
    uids = student_uids(classroom)
    report = CollectReport()
    entries = sorted(inbound_dir(classroom).glob(f"*+{name}+*"))
    rejected_dir = course_root(classroom) / "rejected"
    for entry in entries:
        username = entry.name.rsplit("+", 3)[0]
        problem = ownership_problem(entry, username, uids)
        if problem:
            rejected_dir.mkdir(parents=True, exist_ok=True)
            shutil.move(str(entry), str(rejected_dir / entry.name))
            report.rejected.append((entry.name, problem))
        if advance:
            advance(entry.name)
    checked(api.collect(name, update=True), f"collect {name}")
    report.collected = submitted_students(classroom, name)
    return report


# Autograde ------------------------------------------------------------------


@dataclass
class Run:
    notebook: dict | None
    reason: str | None


class Sandbox:
    """Executes notebooks in throwaway containers of the student image, `jobs` at a time."""

    def __init__(self, classroom: Classroom, jobs: int, client: docker.DockerClient | None = None):
        self.classroom = classroom
        self.limits = classroom.grading
        self.client = client or docker.from_env(timeout=self.limits.wall_clock + 60, max_pool_size=max(jobs, 10))
        self.image = bootstrap.student_image(classroom, self.client)
        self.pool = ThreadPoolExecutor(jobs, thread_name_prefix="sandbox")
        self.runs: dict[tuple[str, str], Future] = {}

    def submit(self, student: str, notebook: str, nb, folder: str) -> None:
        text = nbformat.writes(nb)
        self.runs[(student, notebook)] = self.pool.submit(self.execute, text, notebook, Path(folder))

    def result(self, student: str, notebook: str, nb, folder: str) -> Run:
        if (student, notebook) not in self.runs:
            self.submit(student, notebook, nb, folder)
        return self.runs.pop((student, notebook)).result()

    def execute(self, text: str, notebook: str, folder: Path) -> Run:
        limits = self.limits
        with tempfile.TemporaryDirectory(prefix="d2lhub-grade-") as tmp:
            submission = Path(tmp) / "submission"
            shutil.copytree(folder, submission, ignore=shutil.ignore_patterns("*.ipynb"), symlinks=False)
            (submission / f"{notebook}.ipynb").write_text(text)
            for path in [Path(tmp), submission, *submission.rglob("*")]:
                path.chmod(0o755 if path.is_dir() else 0o644)
            container = self.client.containers.create(
                self.image,
                command=["python3", RUNNER_MOUNT, f"{notebook}.ipynb", str(limits.cell_timeout), str(limits.output_limit)],
                name=f"{self.classroom.spawner.instance}-grade-{uuid.uuid4().hex[:10]}",
                user=SANDBOX_USER,
                environment={
                    "HOME": "/tmp",
                    "JUPYTER_RUNTIME_DIR": "/tmp/runtime",
                    "IPYTHONDIR": "/tmp/ipython",
                    "MPLCONFIGDIR": "/tmp/mpl",
                    "NBGRADER_EXECUTION": "autograde",
                },
                labels={bootstrap.LABEL: self.classroom.spawner.instance, "org.d2lhub.role": "autograde"},
                network_mode="none",
                mem_limit=limits.memory,
                memswap_limit=limits.memory,
                nano_cpus=int(limits.cpu * 1e9),
                pids_limit=limits.pids,
                read_only=True,
                tmpfs={"/tmp": "size=256m,mode=1777"},
                volumes={
                    str(submission): {"bind": "/srv/submission", "mode": "ro"},
                    str(RUNNER): {"bind": RUNNER_MOUNT, "mode": "ro"},
                },
                cap_drop=["ALL"],
                cap_add=SANDBOX_CAPS,
                security_opt=["no-new-privileges"],
            )
            try:
                container.start()
                timed_out = False
                try:
                    container.wait(timeout=limits.wall_clock)
                except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                    timed_out = True
                    container.kill()
                container.reload()
                oom = container.attrs["State"].get("OOMKilled")
                answer = container.logs(stdout=True, stderr=False)
            finally:
                container.remove(force=True)
        if timed_out:
            return Run(None, f"the notebook ran past the {limits.wall_clock} s limit and was stopped")
        try:
            result = json.loads(answer)
        except ValueError:
            why = "ran out of memory" if oom else "was stopped before it finished (process or memory limit?)"
            return Run(None, f"the notebook {why}")
        reason = result.get("reason")
        if reason and oom:
            reason = f"the notebook ran out of memory ({limits.memory // 2**20} MiB); {reason}"
        return Run(result.get("notebook"), reason)


def merge_run(nb, run: Run) -> str | None:
    """Take only outputs from the sandbox (never sources), fail every cell that did not run."""
    reason = run.reason
    executed = run.notebook["cells"] if run.notebook else None
    if executed is not None and [c.get("source") for c in executed] != [c.source for c in nb.cells]:
        executed, reason = None, "the sandbox returned a different notebook; nothing it ran is trusted"
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        ran = executed[index] if executed else {}
        cell.outputs = [nbformat.from_dict(o) for o in ran.get("outputs", [])]
        cell.execution_count = ran.get("execution_count")
        if cell.execution_count is None:
            cell.outputs.append(
                nbformat.v4.new_output(
                    "error", ename="NotExecuted", evalue=reason or "this cell did not run",
                    traceback=[f"NotExecuted: {reason or 'this cell did not run'}"],
                )
            )
    if any(o.get("ename") == "CellTimeoutError" for c in nb.cells if c.cell_type == "code" for o in c.outputs):
        reason = "; ".join(filter(None, [reason, "a cell ran past the per-cell time limit and was interrupted"]))
    if reason:
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(f"**Autograder:** {reason}"))
    return reason


def missing_grade_cells(nb, resources) -> list[str]:
    """Test and answer cells the gradebook knows but the submission deleted (nbgrader scores them 0)."""
    info = resources["nbgrader"]
    with Gradebook(info["db_url"]) as gb:
        known = {cell.name for cell in gb.find_notebook(info["notebook"], info["assignment"]).grade_cells}
    present = {cell.metadata.get("nbgrader", {}).get("grade_id") for cell in nb.cells}
    return sorted(known - present)


def edited_locked_cells(course: Path, nb_name: str, student: str, assignment: str) -> list[str]:
    """Locked cells (tests, instructions) whose submitted source differs from the release; nbgrader restores them."""
    def locked(path: Path) -> dict[str, str]:
        cells = nbformat.read(path, as_version=4).cells
        return {c.metadata["nbgrader"]["grade_id"]: c.source for c in cells if c.metadata.get("nbgrader", {}).get("locked")}

    released = locked(course / "release" / assignment / f"{nb_name}.ipynb")
    submitted = locked(course / "submitted" / student / assignment / f"{nb_name}.ipynb")
    return sorted(k for k, source in submitted.items() if k in released and released[k] != source)


class SandboxSchedule(NbGraderPreprocessor):
    """First pass: hand the sanitized notebook to the sandbox pool and move on."""

    def __init__(self, sandbox: Sandbox, **kwargs):
        super().__init__(**kwargs)
        self.sandbox = sandbox

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        self.sandbox.submit(info["student"], info["notebook"], nb, resources["metadata"]["path"])
        return nb, resources


class SandboxExecute(NbGraderPreprocessor):
    """Second pass, in place of nbgrader's Execute: the notebook as the sandbox ran it."""

    def __init__(self, sandbox: Sandbox, notes: dict[str, str], **kwargs):
        super().__init__(**kwargs)
        self.sandbox = sandbox
        self.notes = notes

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        run = self.sandbox.result(info["student"], info["notebook"], nb, resources["metadata"]["path"])
        reason = merge_run(nb, run)
        missing = missing_grade_cells(nb, resources)
        if missing:
            reason = "; ".join(filter(None, [reason, f"graded cells deleted, scored 0: {', '.join(missing)}"]))
        edited = edited_locked_cells(course_root(self.sandbox.classroom), info["notebook"], info["student"], info["assignment"])
        if edited:
            reason = "; ".join(filter(None, [reason, f"edited locked cells were restored before grading: {', '.join(edited)}"]))
        if reason:
            self.notes[info["student"]] = reason
        return nb, resources


@dataclass
class Graded:
    student: str
    score: float
    max_score: float
    reason: str | None


def notes_file(classroom: Classroom, name: str) -> Path:
    return course_root(classroom) / "notes" / f"{name}.json"


def autograde(classroom: Classroom, name: str, jobs: int = 0, advance: Advance | None = None) -> list[Graded]:
    """Grade every collected submission; one failing submission never stops the others."""
    api = nbgrader_api(classroom)
    submitted = course_root(classroom) / "submitted"
    students = submitted_students(classroom, name)
    sandbox = Sandbox(classroom, jobs or classroom.grading.jobs or os.cpu_count() or 1)
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
    path = notes_file(classroom, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(notes, indent=1, sort_keys=True))
    graded = []
    with gradebook(classroom) as gb:
        for student in students:
            try:
                submission = gb.find_submission(name, student)
                score, max_score = submission.score, submission.max_score
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


def feedback(classroom: Classroom, name: str) -> list[str]:
    """Render feedback (a note for submissions nbgrader could not read) and release it; returns the students."""
    api = nbgrader_api(classroom)
    root = course_root(classroom)
    try:
        notes = json.loads(notes_file(classroom, name).read_text())
    except FileNotFoundError:
        raise GradingError(f"{name} has not been autograded yet: run `d2lhub assignment autograde {name}`") from None
    checked(api.generate_feedback(name, force=True), f"generate_feedback {name}")
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


def grades(classroom: Classroom) -> tuple[list[str], list[dict]]:
    """One row per student: names, email, points per assignment (0 when missing) and total."""
    with gradebook(classroom) as gb:
        assignments = sorted(a.name for a in gb.assignments)
        rows = []
        for student in sorted(gb.students, key=lambda s: s.id):
            row = {"username": student.id, "first_name": student.first_name or "",
                   "last_name": student.last_name or "", "email": student.email or ""}
            for assignment in assignments:
                try:
                    row[assignment] = float(gb.find_submission(assignment, student.id).score or 0)
                except MissingEntry:
                    row[assignment] = 0.0
            row["total"] = sum(row[a] for a in assignments)
            rows.append(row)
    return ["username", "first_name", "last_name", "email", *assignments, "total"], rows


def grades_csv(classroom: Classroom) -> str:
    columns, rows = grades(classroom)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
