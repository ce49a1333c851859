"""Which courses' chapters a server mounts, by its user's hub groups: one course for everyone as
before, or with several courses each course the user studies or grades, at COURSE_MOUNT/<course>."""

from __future__ import annotations

from test_traits import TERM, classroom_from

from d2lhub.course.manifest import MANIFEST_NAME, CourseManifest
from d2lhub.hub import chapters
from d2lhub.studentimage import COURSE_MOUNT


def test_one_course_is_everyones_at_the_course_mount(tmp_path):
    room = classroom_from({}, tmp_path / "state")
    assert chapters.courses_seen(room, set()) == room.all_courses
    assert chapters.course_mounts(room, "/srv/state/course", room.all_courses) == {"/srv/state/course": COURSE_MOUNT}
    assert "no course is built yet" in chapters.course_message(room, str(tmp_path / "none"), room.all_courses)


def test_with_several_courses_a_server_mounts_the_built_courses_its_user_is_in(tmp_path):
    room = classroom_from(TERM, tmp_path / "state")
    built = tmp_path / "courses"
    (built / "intro").mkdir(parents=True)
    CourseManifest(title="Intro", chapters=[]).save(built / "intro" / MANIFEST_NAME)

    both = chapters.courses_seen(room, {"nbgrader-intro-a", "nbgrader-adv"})
    assert [c.id for c in both] == ["intro", "adv"]
    assert [c.id for c in chapters.courses_seen(room, {"formgrade-intro-b"})] == ["intro"]  # graders see theirs too
    assert chapters.courses_seen(room, {"gpu-users"}) == ()
    assert chapters.courses_seen(room, set(), admin=True) == room.all_courses
    # adv is not built: left out rather than an empty folder Docker would make
    assert chapters.course_mounts(room, str(built), both) == {str(built / "intro"): f"{COURSE_MOUNT}/intro"}
    assert chapters.course_message(room, str(built), both).startswith("Starting your container; intro (0 chapters) sync")
    assert "no course of yours is built yet" in chapters.course_message(room, str(built), ())
