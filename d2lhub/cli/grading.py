"""The exercises from roster to grades: `d2lhub roster`, `assignment`, `grades`.

nbgrader loads only when one of these verbs runs, not for every `d2lhub` command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Column

from d2lhub.cli import common
from d2lhub.cli.common import DEFAULT_CONFIG, ConfigOption

roster_app = typer.Typer(help="The class list: hub users, course groups, gradebook.", no_args_is_help=True)
assignment_app = typer.Typer(help="Release, collect, autograde and give feedback on an exercise.", no_args_is_help=True)
grades_app = typer.Typer(help="Grades from the gradebook.", no_args_is_help=True)
CourseOption = Annotated[str | None, typer.Option(
    "--course", help="the course or section: `course`, `course/section` or its nbgrader id (needed when the hub has several)")]
TokenOption = Annotated[str | None, typer.Option(
    "--token", envvar="JUPYTERHUB_API_TOKEN", show_envvar=True,
    help="run as this hub user (their API token): refused for a course they do not teach; none: the host's admin")]


def offering_for(classroom, course: str | None, token: str | None):
    """The offering the verb works on (d2lhub.grading.access), or the one-line `fail`."""
    from d2lhub.grading import access

    return common.run_or_fail(lambda: access.offering_for(classroom, course, token), access.GradingError)


@roster_app.command("import")
def roster_import(
    file: Annotated[Path, typer.Argument(help="CSV with columns username, first name, last name, email, role")],
    config_file: ConfigOption = DEFAULT_CONFIG,
    course: CourseOption = None,
    token: TokenOption = None,
) -> None:
    """Create missing users (with generated passwords), add them to the course's (or section's) groups and gradebook."""
    from d2lhub.grading import roster

    classroom = common.load_to_write(config_file, "import a roster")
    offering = offering_for(classroom, course, token)
    report = common.run_or_fail(lambda: roster.apply(classroom, offering, roster.load(file)), roster.RosterError)
    typer.echo(f"{len(report.created)} user(s) created, {len(report.existing)} already there")
    if report.passwords_file:
        typer.echo(f"passwords of new users: {report.passwords_file} (readable by you only)")


def grading_step(step):
    """step(d2lhub.grading.workflow), its GradingError the one-line `fail` (nbgrader loads only here)."""
    from d2lhub.grading import workflow as grading

    return common.run_or_fail(lambda: step(grading), grading.GradingError)


def to_write(config_file: Path, what: str, course: str | None, token: str | None):
    """(classroom, offering) for a verb that writes: refused on a full disk, or for a course the caller does not teach."""
    classroom = common.load_to_write(config_file, what)
    return classroom, offering_for(classroom, course, token)


@assignment_app.command("release")
def assignment_release(
    name: str,
    config_file: ConfigOption = DEFAULT_CONFIG,
    due: Annotated[str | None, typer.Option(
        "--due", help="due date and time, e.g. '2027-03-01 23:59', in the course's timezone (default: the one it had)")] = None,
    course: CourseOption = None,
    token: TokenOption = None,
) -> None:
    """Make the student version of NAME and put it where the course's (or section's) students fetch it."""
    from d2lhub.grading import deadlines

    classroom, offering = to_write(config_file, f"release {name}", course, token)
    zone = offering.course.timezone

    def release(g):
        return g.release(classroom, offering, name, deadlines.parse_when(due, zone) if due is not None else None)

    target, when = grading_step(release)
    typer.echo(f"released {name} ({target}), due {deadlines.shown(when, zone) if when else 'never'}")


@assignment_app.command("extend")
def assignment_extend(
    name: str,
    student: str,
    config_file: ConfigOption = DEFAULT_CONFIG,
    until: Annotated[str | None, typer.Option(help="STUDENT's own due date, e.g. '2027-03-04 23:59', in the course's timezone")] = None,
    days: Annotated[float | None, typer.Option(min=0, help="or: this many days after NAME's due date")] = None,
    course: CourseOption = None,
    token: TokenOption = None,
) -> None:
    """Give STUDENT more time for NAME: recorded in the gradebook, shown in their Assignments tab."""
    from d2lhub.grading import deadlines

    classroom, offering = to_write(config_file, f"extend {name}", course, token)
    when = grading_step(lambda g: deadlines.extend(classroom, offering, name, student, g.student_uids(classroom), until, days))
    typer.echo(f"{student} has until {deadlines.shown(when, offering.course.timezone)} for {name}")


@assignment_app.command("list")
def assignment_list(config_file: ConfigOption = DEFAULT_CONFIG, course: CourseOption = None, token: TokenOption = None) -> None:
    """Every exercise: its due date, and how many students submitted, late, not at all, with an extension."""
    from d2lhub.grading import deadlines

    classroom = common.load(config_file)
    offering = offering_for(classroom, course, token)
    rows = grading_step(lambda g: deadlines.overview(classroom, offering, g.assignment_names(offering)))
    common.table(
        f"{offering.ref}: exercises (times in {offering.course.timezone})",
        (Column("exercise", no_wrap=True), "due", "submitted", "late", "missing", "extensions"),
        ((r.name, r.due, str(r.submitted), str(r.late), str(r.missing), str(r.extensions)) for r in rows),
    )


@assignment_app.command("collect")
def assignment_collect(name: str, config_file: ConfigOption = DEFAULT_CONFIG, course: CourseOption = None,
                       token: TokenOption = None) -> None:
    """Collect each student's latest own submission of NAME; forged ones are set aside and listed."""
    classroom, offering = to_write(config_file, f"collect {name}", course, token)
    with common.progress(transient=False, counted=False) as shown:
        task = shown.add_task(f"checking owners of {name} submissions", total=None)
        report = grading_step(lambda g: g.collect(classroom, offering, name, lambda entry: shown.advance(task)))
    common.table(
        f"{name}: collected {len(report.collected)}, rejected {len(report.rejected)}",
        ("submission", "status"),
        [*((student, "collected") for student in report.collected),
         *((entry, f"[red]rejected[/red]: {reason}") for entry, reason in report.rejected),
         *((entry, f"[yellow]timestamp corrected[/yellow]: {what}") for entry, what in report.restamped)],
    )


@assignment_app.command("autograde")
def assignment_autograde(
    name: str,
    config_file: ConfigOption = DEFAULT_CONFIG,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=0, help="submissions run at once (0: grading.jobs, else one per core)")] = 0,
    course: CourseOption = None,
    token: TokenOption = None,
) -> None:
    """Run every collected submission of NAME in a sandbox container and score it with nbgrader."""
    from d2lhub.grading import workflow as grading

    classroom, offering = to_write(config_file, f"autograde {name}", course, token)
    total = len(grading.submitted_students(classroom, offering, name))
    with common.progress(transient=False, counted=False) as shown:
        task = shown.add_task(f"autograding {name}", total=total)
        graded = grading_step(lambda g: g.autograde(classroom, offering, name, jobs, lambda s: shown.advance(task)))
    common.table(
        f"{name}: {len(graded)} submission(s) graded",
        ("student", "score", "note"),
        ((row.student, f"{row.score:g} / {row.max_score:g}", row.reason or "") for row in graded),
    )


@assignment_app.command("feedback")
def assignment_feedback(name: str, config_file: ConfigOption = DEFAULT_CONFIG, course: CourseOption = None,
                        token: TokenOption = None) -> None:
    """Render feedback for NAME and release it: each student can fetch their own, and only theirs."""
    classroom, offering = to_write(config_file, f"feedback {name}", course, token)
    students = grading_step(lambda g: g.feedback(classroom, offering, name))
    typer.echo(f"feedback on {name} released to {len(students)} student(s)")


@grades_app.command("export")
def grades_export(
    config_file: ConfigOption = DEFAULT_CONFIG,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write the CSV here instead of stdout")] = None,
    course: CourseOption = None,
    token: TokenOption = None,
) -> None:
    """CSV: one row per student of the course (or section); per exercise the score after any late penalty,
    how late, the penalty; the total."""
    classroom = common.load(config_file)
    offering = offering_for(classroom, course, token)
    text = grading_step(lambda g: g.grades_csv(classroom, offering))
    if out:
        out.write_text(text)
        common.say(f"grades written to {out}")
    else:
        typer.echo(text, nl=False)


def lti_step(config_file: Path, what: str, course: str | None, token: str | None, step):
    """step(d2lhub.grading.ltisync, classroom, offering) against a running hub, its LtiError or RosterError the
    one-line `fail`."""
    from d2lhub.grading import ltisync, roster

    classroom = common.load_to_write(config_file, what)
    common.require_hub(classroom)
    offering = offering_for(classroom, course, token)
    return common.run_or_fail(lambda: step(ltisync, classroom, offering), ltisync.LtiError, roster.RosterError)


@roster_app.command("sync")
def roster_sync(config_file: ConfigOption = DEFAULT_CONFIG, course: CourseOption = None, token: TokenOption = None) -> None:
    """Bring the LMS course's members into the course (or section); drop (disable) who left (LTI Names and Role
    Provisioning Services)."""
    report = lti_step(config_file, "sync the roster", course, token, lambda s, classroom, offering: s.sync(classroom, offering))
    typer.echo(f"roster sync: {len(report.added)} added, {len(report.changed)} changed, "
               f"{len(report.dropped)} dropped, {report.unchanged} unchanged")
    common.table(
        "roster sync",
        ("user", "what"),
        [*((name, f"added ({role})") for name, role in report.added),
         *((name, f"changed ({what})") for name, what in report.changed),
         *((name, "dropped (disabled; files and grades kept)") for name in report.dropped)],
    )


@grades_app.command("push")
def grades_push(assignment: str, config_file: ConfigOption = DEFAULT_CONFIG, course: CourseOption = None,
                token: TokenOption = None) -> None:
    """Post each student's score of ASSIGNMENT to its LMS line item (LTI Assignment and Grade Services)."""
    rows = lti_step(config_file, f"push grades of {assignment}", course, token,
                    lambda s, classroom, offering: s.push(classroom, offering, assignment))
    counts = {status: sum(r.status == status for r in rows) for status in ("sent", "unchanged", "skipped", "refused")}
    typer.echo(f"{assignment}: " + ", ".join(f"{n} {status}" for status, n in counts.items()))
    common.table(
        f"grades push {assignment}",
        ("student", "score", "status", "note"),
        ((r.student, r.score, r.status, r.note) for r in rows),
    )
    if counts["refused"]:
        raise typer.Exit(1)  # nothing is lost: a rerun sends what was refused
