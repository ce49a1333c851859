"""Where grading lives on the host and what each server mounts of it.

Every *offering* (d2lhub.courses: a course, or one section of it) is an nbgrader course of its
own. Host side, all under `state_dir/grading/`:
- `courses/<offering>/` nbgrader's course directory: gradebook.db, source/, release/,
              submitted/, autograded/, feedback/, plus `rejected/` (forged
              submissions set aside at collect) and `notes/` (why a
              submission could not be run, kept for its feedback); a classroom
              from before several courses kept it in `course/`, moved here at start;
- `exchange/<offering>/` nbgrader's filesystem exchange (outbound, inbound,
              feedback, due dates, extensions). A server mounts the folders of the
              offerings its user studies in or grades, read-only, and their
              `inbound` (mode 1733: create, never list, never rename another's
              entry) read-write; nothing of any other offering;
- `nbgrader/<user>.py` the nbgrader config that user's server reads.

The hub's spawner imports this module for every server, so it imports nothing of nbgrader.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from d2lhub.config import Classroom
from d2lhub.courses import Offering, graded_by, studied_by
from d2lhub.studentimage import IN_IMAGE_DIR

EXCHANGE_MOUNT = "/srv/nbgrader/exchange"
STUDENT_CONFIG_MOUNT = "/etc/jupyter/nbgrader_config.py"
# Where students' exercises live: their server's start fetches released ones here
# (d2lhub/image/exercises.py), and their nbgrader fetches, lists and submits from here.
STUDENT_EXERCISES_DIR = "/home/jovyan/exercises"


# What students' nbgrader reads (mounted read-only at /etc/jupyter). nbgrader's submit leaves a
# submission world-readable (0644 files in a 0777 folder, hidden only by its unlistable name);
# this submit closes it to its owner. The instructor's collect runs as root on the host.
# Assignments live in ~/exercises/<assignment> (absolute: nbgrader's default "." is wherever it runs); a
# student of several courses has nbgrader's multi-course layout, ~/exercises/<course>/<assignment>.
STUDENT_CONFIG = """# Written by d2lhub: the courses, their exchange, private submissions, due dates in the Assignments tab.
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
{courses}
c.Exchange.root = {exchange!r}
c.Exchange.assignment_dir = {exercises!r}
c.ExchangeFactory.submit = PrivateSubmit
c.ExchangeFactory.list = DueDateList
c.ExchangeFactory.fetch_assignment = DueDateFetch
c.ExchangeFactory.fetch_feedback = DueDateFetchFeedback
"""


# What instructors' and TAs' nbgrader reads: the course folder of an offering they grade (mounted
# read-write, shared through the graders' group), so the formgrader in their own server sees every
# submission of it and nothing of the others. Grading several, the formgrader opens the one named in
# ~/.d2lhub/formgrader (an offering id), else the first.
GRADER_CONFIG = """# Written by d2lhub: the formgrader's course folder and exchange.
import os

GRADED = {graded!r}  # offering id -> its course folder in this server
try:
    with open(os.path.expanduser("~/.d2lhub/formgrader")) as chosen:
        course = chosen.read().strip()
except OSError:
    course = ""
course = course if course in GRADED else next(iter(GRADED))

c = get_config()  # noqa: F821
c.CourseDirectory.course_id = course
c.CourseDirectory.root = GRADED[course]
c.Exchange.root = {exchange!r}
"""
GRADER_COURSE_MOUNT = "/home/jovyan/course"  # the formgrader needs it inside the server root
LEGACY_COURSE_DIR = "course"  # a classroom's one course folder before several courses (grading/course/)


def sole_offering(classroom: Classroom) -> Offering:
    """The hub's one offering, where a caller named none; with several, which to name is the caller's to say."""
    if len(classroom.offerings) > 1:
        known = ", ".join(o.ref for o in classroom.offerings)
        raise ValueError(f"this hub has several courses and sections ({known}): say which")
    return classroom.offerings[0]


def grading_dir(classroom: Classroom) -> Path:
    return classroom.hub.state_dir / "grading"


def course_root(classroom: Classroom, offering: Offering | None = None) -> Path:
    return grading_dir(classroom) / "courses" / (offering or sole_offering(classroom)).id


def exchange_root(classroom: Classroom) -> Path:
    return grading_dir(classroom) / "exchange"


def exchange_dir(classroom: Classroom, offering: Offering | None = None) -> Path:
    return exchange_root(classroom) / (offering or sole_offering(classroom)).id


def inbound_dir(classroom: Classroom, offering: Offering | None = None) -> Path:
    return exchange_dir(classroom, offering) / "inbound"


def config_file(classroom: Classroom, user: str) -> Path:
    return grading_dir(classroom) / "nbgrader" / f"{user}.py"


def legacy_owner(classroom: Classroom, folder: Path) -> Offering | None:
    """Whose the one course folder of an older classroom is: the course its gradebook names, else the
    hub's only offering; None when neither says (then it stays where it is)."""
    ids = {o.id: o for o in classroom.offerings}
    database = folder / "gradebook.db"
    if database.is_file():
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            named = [row[0] for row in db.execute("SELECT id FROM course")]
        return ids.get(named[0]) if len(named) == 1 else None
    return classroom.offerings[0] if len(classroom.offerings) == 1 else None


def migrate_course_folder(classroom: Classroom) -> Offering | None:
    """Move `grading/course/` of a classroom from before several courses to its offering's folder
    (renamed on the same disk: nothing is copied, a server that has it mounted keeps it); returns
    the offering it went to."""
    legacy = grading_dir(classroom) / LEGACY_COURSE_DIR
    if not legacy.is_dir() or legacy.is_symlink():
        return None
    owner = legacy_owner(classroom, legacy)
    if owner is None or course_root(classroom, owner).exists():
        return None
    course_root(classroom, owner).parent.mkdir(parents=True, exist_ok=True)
    os.chmod(course_root(classroom, owner).parent, 0o755)
    legacy.rename(course_root(classroom, owner))
    return owner


def ensure_exchange(classroom: Classroom, offering: Offering) -> None:
    """The offering's exchange with its multi-user modes, and its course folder the graders' group's."""
    migrate_course_folder(classroom)
    folder = exchange_dir(classroom, offering)
    for path, mode in (
        (exchange_root(classroom), 0o755),
        (folder, 0o755),
        (folder / "outbound", 0o755),
        (folder / "feedback", 0o711),
        (folder / "inbound", 0o1733),
    ):
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, 0, 0)
        os.chmod(path, mode)
    os.chmod(grading_dir(classroom), 0o755)
    share_with_graders(classroom, offering)


def student_config(offerings: tuple[Offering, ...], max_submission: int) -> str:
    """The students' nbgrader config, with d2lhub/image/duedates.py's classes in it: one course as it always
    was; several in nbgrader's multi-course mode (`~/exercises/<course>/<assignment>`, the tab lists each)."""
    if len(offerings) == 1:
        courses = f"c.CourseDirectory.course_id = {offerings[0].id!r}"
    else:
        courses = "c.CourseDirectory.course_id = ''  # every course mounted: the tab lists each\n" \
                  "c.Exchange.path_includes_course = True"
    duedates = (IN_IMAGE_DIR / "duedates.py").read_text()
    return STUDENT_CONFIG.format(courses=courses, exchange=EXCHANGE_MOUNT, exercises=STUDENT_EXERCISES_DIR,
                                 duedates=duedates, max_submission=max_submission)


def grader_config(graded: tuple[Offering, ...]) -> str:
    return GRADER_CONFIG.format(graded={o.id: grader_course_mount(graded, o) for o in graded}, exchange=EXCHANGE_MOUNT)


def grader_course_mount(graded: tuple[Offering, ...], offering: Offering) -> str:
    """~/course for a grader of one offering (as always); ~/course/<offering> each, for a grader of several."""
    return GRADER_COURSE_MOUNT if len(graded) == 1 else f"{GRADER_COURSE_MOUNT}/{offering.id}"


def write_config(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists() or target.read_text() != text:
        target.write_text(text)
        os.chmod(target, 0o644)


def graders_gid(classroom: Classroom) -> int:
    """The group instructors' and TAs' servers run with: students' uids start above it (d2lhub.identity)."""
    return classroom.spawner.uid_base


def share_with_graders(classroom: Classroom, offering: Offering, everything: bool = False) -> None:
    """The course folder belongs to root and the graders' group (setgid: new files stay in it); students never
    see it, and graders only in the servers of those who grade this offering (the only ones it is mounted in).

    Spawns need only the folder itself; the walk over its contents (files written before the
    group-writable umask) is for the grading commands, not every student's start.
    """
    root, gid = course_root(classroom, offering), graders_gid(classroom)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root.parent, 0o755)
    for path in (root, *root.rglob("*")) if everything else (root,):
        if path.is_symlink():
            continue
        os.chown(path, -1, gid)
        mode = path.stat().st_mode
        os.chmod(path, (mode | 0o2070) & ~0o007 if path.is_dir() else (mode | 0o060) & ~0o007)


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


def extension_file(classroom: Classroom, user: str, offering: Offering | None = None) -> Path:
    """A student's extensions (d2lhub/grading/deadlines.py), readable by their uid alone, in a folder nobody lists."""
    return exchange_dir(classroom, offering) / "extensions" / f"{user}.json"


def claim_extensions(classroom: Classroom, offering: Offering, user: str, uid: int) -> None:
    """Extensions given before the student's first start are root's until then: hand them over."""
    path = extension_file(classroom, user, offering)
    if path.is_file() and path.stat().st_uid != uid:
        os.chown(path, uid, 0)


def server_offerings(classroom: Classroom, groups: set[str]) -> tuple[tuple[Offering, ...], tuple[Offering, ...]]:
    """(studied, graded): the offerings a hub user with these hub groups studies in and grades. On a hub with
    one offering, whoever grades nothing studies it, as before several courses (an admin, an account the
    groups do not list yet)."""
    graded = graded_by(classroom.offerings, groups)
    studied = studied_by(classroom.offerings, groups)
    if not studied and not graded and len(classroom.offerings) == 1:
        studied = classroom.offerings
    return studied, graded


def student_mounts(classroom: Classroom, uid: int, user: str, groups: set[str]) -> dict[str, dict]:
    """Docker binds for a server: the exchange folder of each offering its user studies in or grades,
    read-only, with its inbound writable; nothing of any other offering. A grader's server also gets
    the course folder of each offering they grade, read-write, for the formgrader."""
    studied, graded = server_offerings(classroom, groups)
    mounts = {str(passwd_file(classroom, uid)): {"bind": "/etc/passwd", "mode": "ro"}}
    for offering in dict.fromkeys((*studied, *graded)):
        ensure_exchange(classroom, offering)
        claim_extensions(classroom, offering, user, uid)
        mounts[str(exchange_dir(classroom, offering))] = {"bind": f"{EXCHANGE_MOUNT}/{offering.id}", "mode": "ro"}
        mounts[str(inbound_dir(classroom, offering))] = {"bind": f"{EXCHANGE_MOUNT}/{offering.id}/inbound", "mode": "rw"}
    for offering in graded:
        mounts[str(course_root(classroom, offering))] = {"bind": grader_course_mount(graded, offering), "mode": "rw"}
    text = grader_config(graded) if graded else student_config(studied, classroom.grading.max_submission) if studied else ""
    write_config(config_file(classroom, user), text)
    mounts[str(config_file(classroom, user))] = {"bind": STUDENT_CONFIG_MOUNT, "mode": "ro"}
    return mounts
