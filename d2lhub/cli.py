"""The `d2lhub` command: thin verbs over the modules; bad input exits 2 with one line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from d2lhub import bootstrap, config, content, hubprocess
from d2lhub.auth import account_passwords
from d2lhub.hubconfig import course_dir, public_url

app = typer.Typer(help="Run and manage a Dive into Deep Learning classroom hub.", no_args_is_help=True)
course_app = typer.Typer(help="Build and check the course chapters.", no_args_is_help=True)
images_app = typer.Typer(help="Build the student images.", no_args_is_help=True)
app.add_typer(course_app, name="course")
app.add_typer(images_app, name="images")
console = Console(stderr=True)
ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="the classroom file", envvar="D2LHUB_CONFIG")]
DEFAULT_CONFIG = Path("classroom.yaml")


def fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(2)


def load(path: Path) -> config.Classroom:
    try:
        return config.load(path)
    except config.ConfigError as exc:
        raise fail(str(exc)) from None


def say(message: str) -> None:
    console.print(f"[dim]d2lhub:[/dim] {message}", highlight=False)


def build_course(classroom: config.Classroom, source: str | None = None) -> content.CourseManifest:
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("importing chapters", total=None)

        def advance(done: int, total: int, name: str) -> None:
            progress.update(task, completed=done, total=total, description=f"importing {name}")

        try:
            return content.build_course(source or classroom.course.source, course_dir(classroom), progress=advance)
        except content.CourseError as exc:
            raise fail(str(exc)) from None


@app.command()
def up(config_file: ConfigOption = DEFAULT_CONFIG) -> None:
    """Set up whatever is missing, start the hub, print its URL and the demo sign-ins."""
    classroom = load(config_file)
    try:
        image = bootstrap.ensure_all(classroom, say=say)
        say(f"student image {image}")
        manifest = build_course(classroom)
        say(f"course: {len(manifest.chapters)} chapters")
        hubprocess.start(classroom, config_file)
    except (bootstrap.BootstrapError, hubprocess.HubError) as exc:
        raise fail(str(exc)) from None
    roles = {a.name: a.role for a in classroom.auth.accounts}
    typer.echo(f"\nThe classroom is up: {public_url(classroom)}\nSign in as:")
    for name, password in account_passwords(classroom).items():
        typer.echo(f"  {name} / {password} ({roles[name]})")
    typer.echo("\nStop it with `make down` (students' files stay).")


@app.command()
def down(config_file: ConfigOption = DEFAULT_CONFIG) -> None:
    """Stop the hub and the student servers; student volumes stay."""
    classroom = load(config_file)
    stopped_hub = hubprocess.stop(classroom)
    servers = hubprocess.stop_servers(classroom) if bootstrap.engine_answers() else 0
    typer.echo(f"hub {'stopped' if stopped_hub else 'was not running'}; {servers} student server(s) stopped")


@app.command()
def status(config_file: ConfigOption = DEFAULT_CONFIG) -> None:
    """Who is running where: users, server state, container, image."""
    classroom = load(config_file)
    if not hubprocess.answers(classroom):
        raise fail(f"no hub answers at {public_url(classroom)}; start it with `make up`")
    table = Table(title=f"{classroom.course.name} — {public_url(classroom)}")
    for column in ("user", "role", "server", "container", "image", "last activity"):
        table.add_column(column)
    for row in hubprocess.status(classroom):
        table.add_row(row.user, row.role, row.server, row.container, row.image, row.last_activity)
    Console().print(table)


@images_app.command("build")
def images_build(config_file: ConfigOption = DEFAULT_CONFIG) -> None:
    """Build the base and student images (skipped when their inputs are unchanged)."""
    classroom = load(config_file)
    try:
        client = bootstrap.ensure_engine(classroom.hub.state_dir, say=say)
        bootstrap.ensure_base_image(client, classroom, say=say)
        typer.echo(bootstrap.ensure_student_image(client, classroom, say=say))
    except bootstrap.BootstrapError as exc:
        raise fail(str(exc)) from None


@course_app.command("build")
def course_build(
    config_file: ConfigOption = DEFAULT_CONFIG,
    source: Annotated[str | None, typer.Option("--from", help="d2l-en folder, git URL or release archive")] = None,
) -> None:
    """Import the chapters (MXNet code and prose only) into the notebooks students get."""
    classroom = load(config_file)
    manifest = build_course(classroom, source)
    typer.echo(f"{len(manifest.chapters)} chapters in {course_dir(classroom)} ({len(manifest.skipped)} without MXNet code skipped)")


roster_app = typer.Typer(help="The class list: hub users, course groups, gradebook.", no_args_is_help=True)
assignment_app = typer.Typer(help="Release, collect, autograde and give feedback on an exercise.", no_args_is_help=True)
grades_app = typer.Typer(help="Grades from the gradebook.", no_args_is_help=True)
app.add_typer(roster_app, name="roster")
app.add_typer(assignment_app, name="assignment")
app.add_typer(grades_app, name="grades")


@roster_app.command("import")
def roster_import(
    file: Annotated[Path, typer.Argument(help="CSV with columns username, first name, last name, email, role")],
    config_file: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Create missing users (with generated passwords), add them to the course groups and the gradebook."""
    from d2lhub import roster

    classroom = load(config_file)
    try:
        report = roster.apply(classroom, roster.load(file))
    except roster.RosterError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"{len(report.created)} user(s) created, {len(report.existing)} already there")
    if report.passwords_file:
        typer.echo(f"passwords of new users: {report.passwords_file} (readable by you only)")


def grading_step(step):
    from d2lhub import grading

    try:
        return step(grading)
    except grading.GradingError as exc:
        raise fail(str(exc)) from None


@assignment_app.command("release")
def assignment_release(name: str, config_file: ConfigOption = DEFAULT_CONFIG) -> None:
    """Make the student version of NAME and put it where students fetch it."""
    classroom = load(config_file)
    target = grading_step(lambda g: g.release(classroom, name))
    typer.echo(f"released {name} ({target})")


@assignment_app.command("collect")
def assignment_collect(name: str, config_file: ConfigOption = DEFAULT_CONFIG) -> None:
    """Collect each student's latest own submission of NAME; forged ones are set aside and listed."""
    classroom = load(config_file)
    with Progress(console=console) as progress:
        task = progress.add_task(f"checking owners of {name} submissions", total=None)
        report = grading_step(lambda g: g.collect(classroom, name, lambda entry: progress.advance(task)))
    table = Table(title=f"{name}: collected {len(report.collected)}, rejected {len(report.rejected)}")
    table.add_column("submission")
    table.add_column("status")
    for student in report.collected:
        table.add_row(student, "collected")
    for entry, reason in report.rejected:
        table.add_row(entry, f"[red]rejected[/red]: {reason}")
    Console().print(table)


@assignment_app.command("autograde")
def assignment_autograde(
    name: str,
    config_file: ConfigOption = DEFAULT_CONFIG,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=0, help="submissions run at once (0: grading.jobs, else one per core)")] = 0,
) -> None:
    """Run every collected submission of NAME in a sandbox container and score it with nbgrader."""
    from d2lhub import grading

    classroom = load(config_file)
    total = len(grading.submitted_students(classroom, name))
    with Progress(console=console) as progress:
        task = progress.add_task(f"autograding {name}", total=total)
        graded = grading_step(lambda g: g.autograde(classroom, name, jobs, lambda s: progress.advance(task)))
    table = Table(title=f"{name}: {len(graded)} submission(s) graded")
    for column in ("student", "score", "note"):
        table.add_column(column)
    for row in graded:
        table.add_row(row.student, f"{row.score:g} / {row.max_score:g}", row.reason or "")
    Console().print(table)


@assignment_app.command("feedback")
def assignment_feedback(name: str, config_file: ConfigOption = DEFAULT_CONFIG) -> None:
    """Render feedback for NAME and release it: each student can fetch their own, and only theirs."""
    classroom = load(config_file)
    students = grading_step(lambda g: g.feedback(classroom, name))
    typer.echo(f"feedback on {name} released to {len(students)} student(s)")


@grades_app.command("export")
def grades_export(
    config_file: ConfigOption = DEFAULT_CONFIG,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write the CSV here instead of stdout")] = None,
) -> None:
    """CSV: one row per student, one column per exercise, and the total."""
    classroom = load(config_file)
    text = grading_step(lambda g: g.grades_csv(classroom))
    if out:
        out.write_text(text)
        say(f"grades written to {out}")
    else:
        typer.echo(text, nl=False)
