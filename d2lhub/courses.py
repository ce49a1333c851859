"""Courses and their sections on one hub, and the nbgrader course each of them is.

A hub serves one course (`course:`) or several (`courses:`). A course may split into sections:
they share its chapters and exercises but each has its own roster, exchange, gradebook,
formgrader and graders, so a section is an nbgrader course of its own, named
`<course>-<section>`. A course without sections is one nbgrader course named by its id. Each
of these is an *offering* (`Offering`), the unit every grading step, hub group and role is
scoped to; accounts enrol in offerings by `course` or `course/section` (`Account.courses`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, field_validator

from d2lhub.authconfig import NAME_PATTERN, Account, Auth
from d2lhub.configfile import repeated
from d2lhub.deadlines_config import known_zone
from d2lhub.limits import Strict

OFFERING_ID_MAX = 32  # nbgrader course ids name hub groups, folders and services: keep them short


class Section(Strict):
    id: str = Field(pattern=NAME_PATTERN, description="short id; the section's nbgrader course is `<course>-<id>`")
    name: str = Field("", description="shown to its students and graders, e.g. `Tuesday lab`; empty: the id")


class Course(Strict):
    id: str = Field("d2l", pattern=NAME_PATTERN, description="short id; names the nbgrader groups "
                    "`nbgrader-<id>` and `formgrade-<id>`")
    name: str = Field("Dive into Deep Learning", description="shown in every hub page's title and top bar")
    term: str = Field("", description="shown after the name, e.g. `Winter 2026`; empty: nothing")
    welcome: str = Field("Sign in to open your own JupyterLab with the book's chapters, ready to run.",
                         description="the sentence above the sign-in form")
    help_url: str = Field("", description="a *Help* link in the top bar and on the sign-in page; empty: no link")
    source: str = Field("course", description="the chapters: a d2l-en folder, git URL or release archive")
    data: tuple[str, ...] = Field(
        (), description="data sets to pre-fetch (`make data`) besides those the chapters name: d2l DATA_HUB "
        "keys or Gluon sets"
    )
    data_url: str = Field(
        "http://d2l-data.s3-accelerate.amazonaws.com/",
        pattern=r"^https?://[^\s/]+",
        description="where `course data` fetches from: d2l's DATA_URL, or a mirror's URL, which then serves every "
        "kind of data set (files by their name, Gluon's under gluon/...)",
    )
    gluon_repo: str = Field(
        "", pattern=r"^(https?://[^\s/]+.*)?$", description="a mirror of Gluon's data repository (data sets, model zoo weights); empty: "
        "the data_url mirror if set, else MXNet's own"
    )
    assignments: Path = Field(Path("assignments"), description="the exercises: nbgrader sources "
                              "(`source/<name>/`) and `nbgrader_config.py`")
    timezone: str = Field("UTC", description="the IANA zone due dates are given and shown in (daylight saving "
                          "included), e.g. Europe/Berlin; also prestart's unless it names its own")

    sections: tuple[Section, ...] = Field(
        (), description="sections sharing this course's chapters and exercises, each with its own roster, "
        "exchange, gradebook and graders (`<course>-<section>` in nbgrader); none: the course is one"
    )

    @field_validator("sections")
    @classmethod
    def sections_unique(cls, sections: tuple[Section, ...]) -> tuple[Section, ...]:
        ids = [s.id for s in sections]
        duplicates = repeated(ids)
        if duplicates:
            raise ValueError(f"section {', '.join(duplicates)} listed twice")
        return sections

    @field_validator("data")
    @classmethod
    def data_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if not name.strip() or "/" in name:
                raise ValueError(f"data set name {name!r} is not a DATA_HUB key")
        duplicates = repeated(names)
        if duplicates:
            raise ValueError(f"{', '.join(duplicates)} listed twice")
        return names

    @field_validator("timezone")
    @classmethod
    def zone(cls, name: str) -> str:
        return known_zone(name)

    @field_validator("data_url", "gluon_repo")
    @classmethod
    def ends_with_slash(cls, url: str) -> str:
        return url if not url or url.endswith("/") else url + "/"


@dataclass(frozen=True)
class Offering:
    """One nbgrader course: a whole course, or one section of it."""

    course: Course
    section: Section | None

    @property
    def id(self) -> str:
        return f"{self.course.id}-{self.section.id}" if self.section else self.course.id

    @property
    def ref(self) -> str:
        """How classroom.yaml and the CLI name it: `course` or `course/section`."""
        return f"{self.course.id}/{self.section.id}" if self.section else self.course.id

    @property
    def title(self) -> str:
        section = self.section.name or self.section.id if self.section else ""
        return f"{self.course.name} ({section})" if section else self.course.name

    @property
    def students_group(self) -> str:
        """The hub group nbgrader's JupyterHub integration reads a student's courses from."""
        return f"nbgrader-{self.id}"

    @property
    def graders_group(self) -> str:
        return f"formgrade-{self.id}"


def offerings(courses: tuple[Course, ...]) -> tuple[Offering, ...]:
    return tuple(
        Offering(course, section) for course in courses for section in (course.sections or (None,))
    )


def studied_by(all_offerings: tuple[Offering, ...], groups: set[str]) -> tuple[Offering, ...]:
    """The offerings a hub user studies in, by their hub groups (which hold the roster however
    people sign in: classroom.yaml's accounts, a roster import, SSO groups or an LMS launch)."""
    return tuple(o for o in all_offerings if o.students_group in groups)


def graded_by(all_offerings: tuple[Offering, ...], groups: set[str]) -> tuple[Offering, ...]:
    return tuple(o for o in all_offerings if o.graders_group in groups)


def find_offering(courses: tuple[Course, ...], ref: str) -> Offering:
    """The offering `ref` names (`course`, `course/section`, or the nbgrader id `course-section`)."""
    for offering in offerings(courses):
        if ref in (offering.ref, offering.id):
            return offering
    known = ", ".join(o.ref for o in offerings(courses))
    raise KeyError(f"no course or section {ref!r} on this hub (there are: {known})")


def named(courses: tuple[Course, ...], ref: str, role: str) -> tuple[Offering, ...]:
    """The offerings `ref` puts someone of `role` in: a grader named on a course with sections
    grades all of them; a student must name one section (two sections' rosters would otherwise
    both hold them). ValueError naming the choices otherwise."""
    course = next((c for c in courses if c.id == ref), None)
    if course is not None and course.sections:
        if role == "student":
            choices = ", ".join(f"{course.id}/{s.id}" for s in course.sections)
            raise ValueError(f"course {ref} has sections; name one ({choices})")
        return offerings((course,))
    try:
        return (find_offering(courses, ref),)
    except KeyError as error:
        raise ValueError(error.args[0]) from None


def enrolment(courses: tuple[Course, ...], account: Account) -> tuple[Offering, ...]:
    """The offerings an account belongs to (see `named`). With one course and no `courses` named,
    the account belongs to that course."""
    if account.role == "admin" and not account.courses:
        return ()
    if not account.courses:
        if len(courses) == 1 and not courses[0].sections:
            return offerings(courses)
        choices = ", ".join(o.ref for o in offerings(courses))
        raise ValueError(f"user {account.name!r}: `courses` must name their course or section ({choices})")
    found: list[Offering] = []
    for ref in account.courses:
        try:
            found.extend(named(courses, ref, account.role))
        except ValueError as error:
            raise ValueError(f"user {account.name!r}: {error}") from None
    if account.role == "student":
        for course in {o.course.id for o in found}:
            sections = [o.ref for o in found if o.course.id == course]
            if len(sections) > 1:
                raise ValueError(f"user {account.name!r}: a student is in one section of a course ({', '.join(sections)})")
    return tuple(dict.fromkeys(found))


def check_courses(courses: tuple[Course, ...], accounts: tuple[Account, ...]) -> None:
    """Every offering id unique and short enough, every account's enrolment valid."""
    ids = [o.id for o in offerings(courses)]
    duplicates = repeated(ids)
    if duplicates:
        raise ValueError(f"courses: {', '.join(duplicates)} named twice (a course id, or `<course>-<section>`)")
    too_long = [i for i in ids if len(i) > OFFERING_ID_MAX]
    if too_long:
        raise ValueError(f"courses: {', '.join(too_long)} longer than {OFFERING_ID_MAX} characters")
    for account in accounts:
        enrolment(courses, account)


def check_sign_in(courses: tuple[Course, ...], auth: Auth) -> None:
    """The sign-in's course maps name real offerings, and on a hub with several every person joins
    one by a course map (OIDC and LDAP `courses`, LTI contexts' `courses`), never by the hub-wide roles."""
    several = len(offerings(courses)) > 1
    identity = auth.oidc or auth.ldap
    if identity is not None:
        key = f"auth.{auth.kind}"
        given = [role for role in ("student", "ta", "instructor") if getattr(identity.roles, role)]
        if several and given:
            raise ValueError(f"{key}.roles.{given[0]}: with several courses or sections, people join one in "
                             f"`{key}.courses` (`roles` names admins)")
        for ref, roles in identity.courses.items():
            for role in ("student", "ta", "instructor"):
                if getattr(roles, role):
                    try:
                        named(courses, ref, role)
                    except ValueError as error:
                        raise ValueError(f"{key}.courses.{ref}: {error}") from None
    lti = auth.lti13
    if lti is not None:
        for context, ref in lti.courses.items():
            if context not in lti.contexts:
                raise ValueError(f"auth.lti13.courses: context {context!r} is not one of auth.lti13.contexts")
            try:
                named(courses, ref, "student")
            except ValueError as error:
                raise ValueError(f"auth.lti13.courses.{context}: {error}") from None
        unmapped = [context for context in lti.contexts if context not in lti.courses]
        if several and unmapped:
            raise ValueError(f"auth.lti13.courses: with several courses or sections, name the course or section of "
                             f"context {', '.join(unmapped)}")
