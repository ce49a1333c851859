"""Courses, sections and enrolment: the offerings classroom.yaml describes, and its refusals."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from d2lhub.config import Classroom
from d2lhub.courses import enrolment, find_offering, graded_by, studied_by

TWO_COURSES = {
    "courses": [
        {"id": "intro", "name": "Intro to DL", "sections": [{"id": "a", "name": "Tuesday"}, {"id": "b"}]},
        {"id": "adv", "name": "Advanced DL"},
    ],
}


def classroom(accounts=(), **extra) -> Classroom:
    return Classroom.model_validate({**TWO_COURSES, **extra, "auth": {"accounts": list(accounts)}})


def test_each_section_is_an_nbgrader_course_of_its_own_and_the_first_course_names_the_hub():
    room = classroom()
    assert [o.id for o in room.offerings] == ["intro-a", "intro-b", "adv"]
    assert [o.ref for o in room.offerings] == ["intro/a", "intro/b", "adv"]
    assert [o.title for o in room.offerings] == ["Intro to DL (Tuesday)", "Intro to DL (b)", "Advanced DL"]
    assert room.offerings[0].students_group == "nbgrader-intro-a"
    assert room.offerings[0].graders_group == "formgrade-intro-a"
    assert room.course.id == "intro"


def test_one_course_without_sections_enrols_everyone_in_it_as_before():
    room = Classroom.model_validate({"auth": {"accounts": [{"name": "s1", "role": "student"}]}})
    assert [o.id for o in room.offerings] == ["d2l"]
    assert [o.id for o in enrolment(room.all_courses, room.auth.accounts[0])] == ["d2l"]


def test_a_grader_named_on_a_course_grades_every_section_and_a_student_is_in_one():
    room = classroom([
        {"name": "s1", "role": "student", "courses": ["intro/a", "adv"]},
        {"name": "i1", "role": "instructor", "courses": ["intro"]},
        {"name": "t1", "role": "ta", "courses": ["intro/b"]},
        {"name": "root", "role": "admin"},
    ])
    enrolled = {a.name: [o.id for o in enrolment(room.all_courses, a)] for a in room.auth.accounts}
    assert enrolled == {"s1": ["intro-a", "adv"], "i1": ["intro-a", "intro-b"], "t1": ["intro-b"], "root": []}


@pytest.mark.parametrize(
    ("accounts", "extra", "message"),
    [
        ([{"name": "s1", "role": "student", "courses": ["intro"]}], {}, "course intro has sections; name one (intro/a, intro/b)"),
        ([{"name": "s1", "role": "student", "courses": ["intro/a", "intro/b"]}], {}, "a student is in one section"),
        ([{"name": "s1", "role": "student"}], {}, "`courses` must name their course or section (intro/a, intro/b, adv)"),
        ([{"name": "s1", "role": "ta", "courses": ["intro/c"]}], {}, "no course or section 'intro/c'"),
        ([], {"course": {"id": "x"}}, "give `course` (one course) or `courses` (several), not both"),
    ],
)
def test_bad_enrolment_or_courses_is_refused_naming_the_problem(accounts, extra, message):
    with pytest.raises(ValidationError) as error:
        classroom(accounts, **extra)
    assert message in str(error.value)


def test_an_offering_id_may_not_clash_or_repeat():
    with pytest.raises(ValidationError, match="intro-a named twice"):
        Classroom.model_validate({"courses": [{"id": "intro", "sections": [{"id": "a"}]}, {"id": "intro-a"}]})
    with pytest.raises(ValidationError, match="section a listed twice"):
        Classroom.model_validate({"courses": [{"id": "intro", "sections": [{"id": "a"}, {"id": "a"}]}]})


def test_an_offering_is_found_by_its_ref_or_its_nbgrader_id():
    room = classroom()
    assert find_offering(room.all_courses, "intro/b").id == "intro-b"
    assert find_offering(room.all_courses, "intro-b").ref == "intro/b"
    with pytest.raises(KeyError, match="there are: intro/a, intro/b, adv"):
        find_offering(room.all_courses, "intro")


def test_hub_groups_say_what_a_user_studies_and_grades():
    room = classroom()
    groups = {"nbgrader-intro-b", "formgrade-adv", "gpu"}
    assert [o.id for o in studied_by(room.offerings, groups)] == ["intro-b"]
    assert [o.id for o in graded_by(room.offerings, groups)] == ["adv"]
