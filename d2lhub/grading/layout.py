"""Where grading lives on the host and what each server mounts of it.

Host side, all under `state_dir/grading/`:
- `course/`   nbgrader's course directory: gradebook.db, source/, release/,
              submitted/, autograded/, feedback/, plus `rejected/` (forged
              submissions set aside at collect) and `notes/` (why a
              submission could not be run, kept for its feedback);
- `exchange/` nbgrader's filesystem exchange. Student containers mount it
              read-only, and only `<course>/inbound` (mode 1733: create,
              never list, never rename another's entry) read-write.

The hub's spawner imports this module for every server, so it imports nothing of nbgrader.
"""

from __future__ import annotations

import os
from pathlib import Path

from d2lhub.config import Classroom
from d2lhub.studentimage import IN_IMAGE_DIR

EXCHANGE_MOUNT = "/srv/nbgrader/exchange"
STUDENT_CONFIG_MOUNT = "/etc/jupyter/nbgrader_config.py"
# Where students' exercises live: their server's start fetches released ones here
# (d2lhub/image/exercises.py), and their nbgrader fetches, lists and submits from here.
STUDENT_EXERCISES_DIR = "/home/jovyan/exercises"


# What students' nbgrader reads (mounted read-only at /etc/jupyter). nbgrader's submit leaves a
# submission world-readable (0644 files in a 0777 folder, hidden only by its unlistable name);
# this submit closes it to its owner. The instructor's collect runs as root on the host.
# Assignments live in ~/exercises/<assignment> (absolute: nbgrader's default "." is wherever it runs).
STUDENT_CONFIG = """# Written by d2lhub: the course, its exchange, private submissions, due dates in the Assignments tab.
import os

{duedates}

from nbgrader.exchange.default.submit import ExchangeSubmit


MAX_SUBMISSION = {max_submission}


class PrivateSubmit(PlainName, ExchangeSubmit):
    def copy_files(self):
        size = sum(
            os.lstat(os.path.join(folder, name)).st_size
            for folder, _, files in os.walk(self.src_path) for name in files
        )
        if size > MAX_SUBMISSION:
            self.fail(
                f"Submission refused: {{self.coursedir.assignment_id}} is {{size / 2**20:.1f}} MB, more than "
                f"the {{MAX_SUBMISSION / 2**20:.0f}} MB a submission may be. Delete large files (data, model "
                f"checkpoints) from {{self.src_path}} and submit again."
            )
        super().copy_files()
        dest = os.path.join(self.inbound_path, self.assignment_filename)
        for folder, _, files in os.walk(dest):
            for name in files:
                os.chmod(os.path.join(folder, name), 0o600)
            os.chmod(folder, 0o700)


c = get_config()  # noqa: F821
c.CourseDirectory.course_id = {course!r}
c.Exchange.root = {exchange!r}
c.Exchange.assignment_dir = {exercises!r}
c.ExchangeFactory.submit = PrivateSubmit
c.ExchangeFactory.list = DueDateList
c.ExchangeFactory.fetch_assignment = DueDateFetch
c.ExchangeFactory.fetch_feedback = DueDateFetchFeedback
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
    write_config(student_config_file(classroom), student_config(classroom.course.id, classroom.grading.max_submission))
    write_config(
        grader_config_file(classroom),
        GRADER_CONFIG.format(course=classroom.course.id, root=GRADER_COURSE_MOUNT, exchange=EXCHANGE_MOUNT),
    )


def student_config(course: str, max_submission: int) -> str:
    """The students' nbgrader config, with d2lhub/image/duedates.py's classes in it."""
    duedates = (IN_IMAGE_DIR / "duedates.py").read_text()
    return STUDENT_CONFIG.format(course=course, exchange=EXCHANGE_MOUNT, exercises=STUDENT_EXERCISES_DIR,
                                 duedates=duedates, max_submission=max_submission)


def write_config(target: Path, text: str) -> None:
    if not target.exists() or target.read_text() != text:
        target.write_text(text)
        os.chmod(target, 0o644)


def graders_gid(classroom: Classroom) -> int:
    """The group instructors' and TAs' servers run with: students' uids start above it (d2lhub.identity)."""
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


def extension_file(classroom: Classroom, user: str) -> Path:
    """A student's extensions (d2lhub/grading/deadlines.py), readable by their uid alone, in a folder nobody lists."""
    return exchange_root(classroom) / classroom.course.id / "extensions" / f"{user}.json"


def claim_extensions(classroom: Classroom, user: str, uid: int) -> None:
    """Extensions given before the student's first start are root's until then: hand them over."""
    path = extension_file(classroom, user)
    if path.is_file() and path.stat().st_uid != uid:
        os.chown(path, uid, 0)


def student_mounts(classroom: Classroom, uid: int, grader: bool = False, user: str | None = None) -> dict[str, dict]:
    """Docker binds for a server: the course's exchange read-only, its inbound writable; an
    instructor's or TA's server also gets the course folder read-write, for the formgrader."""
    ensure_exchange(classroom)
    if user is not None:
        claim_extensions(classroom, user, uid)
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
