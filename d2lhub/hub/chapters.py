"""Which courses' chapters a server gets, mounted where, and what the spawn page says of them.

With one course on the hub, its built chapters (`state_dir/course`) are mounted at COURSE_MOUNT
for everyone and the start script syncs them into `~/d2l`, as before several courses. With
several (`courses:`), each is built into `state_dir/courses/<course>/`; a server mounts the
courses its user studies or grades (by their offerings' hub groups; a hub admin sees all) at
`COURSE_MOUNT/<course>`, and the same sync puts them in `~/d2l/<course>/`
(d2lhub/image/delivery.py). Sections share their course's chapters.
"""

from __future__ import annotations

from pathlib import Path

from d2lhub.config import Classroom
from d2lhub.course.manifest import MANIFEST_NAME, CourseError, CourseManifest
from d2lhub.courses import Course, graded_by, studied_by
from d2lhub.studentimage import COURSE_MOUNT


def courses_seen(classroom: Classroom, groups: set[str], admin: bool = False) -> tuple[Course, ...]:
    """The courses whose chapters this user's server gets."""
    if len(classroom.all_courses) == 1 or admin:
        return classroom.all_courses
    mine = {o.course.id for o in (*studied_by(classroom.offerings, groups), *graded_by(classroom.offerings, groups))}
    return tuple(course for course in classroom.all_courses if course.id in mine)


def course_mounts(classroom: Classroom, course_dir: str, courses: tuple[Course, ...]) -> dict[str, str]:
    """Host folder -> where the server sees it (read-only); a course not built yet is left out, so
    Docker never makes an empty folder in its place."""
    if not course_dir:
        return {}
    if len(classroom.all_courses) == 1:
        return {course_dir: COURSE_MOUNT}
    built = {course.id: Path(course_dir) / course.id for course in courses}
    return {str(path): f"{COURSE_MOUNT}/{course_id}" for course_id, path in built.items() if path.is_dir()}


def chapter_count(folder: Path) -> int | None:
    try:
        return len(CourseManifest.load(folder / MANIFEST_NAME).chapters)
    except CourseError:
        return None


def course_message(classroom: Classroom, course_dir: str, courses: tuple[Course, ...]) -> str:
    """What the start script will do with ~/d2l, told from the hub's copy of the course manifests."""
    if len(classroom.all_courses) == 1:
        chapters = chapter_count(Path(course_dir))
        if chapters is None:
            return "Starting your container (no course is built yet: ~/d2l stays as it is)"
        return f"Starting your container; {chapters} chapters sync into ~/d2l (chapters you edited are kept)"
    counts = {course.id: chapter_count(Path(course_dir) / course.id) for course in courses}
    built = [f"{course_id} ({count} chapters)" for course_id, count in counts.items() if count is not None]
    if not built:
        return "Starting your container (no course of yours is built yet: ~/d2l stays as it is)"
    return f"Starting your container; {', '.join(built)} sync into ~/d2l/<course>/ (chapters you edited are kept)"
