"""The `d2lhub` command: thin verbs over the modules; bad input exits 2 with one line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from d2lhub import bootstrap, config, content, coursecheck, coursedata, hubprocess
from d2lhub.auth import account_passwords
from d2lhub.hubconfig import course_dir, public_url
from d2lhub.spawner import data_volume

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



@course_app.command("check")
def course_check(
    config_file: ConfigOption = DEFAULT_CONFIG,
    jobs: Annotated[
        int, typer.Option(min=1, max=16, help="containers running chapters side by side, each with a student's limits")
    ] = 2,
    timeout: Annotated[int, typer.Option(min=10, help="seconds one cell may run")] = 600,
) -> None:
    """Run every built chapter top to bottom in a container like a student's; exit 1 naming each failure."""
    classroom = load(config_file)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("starting the check container", total=None)

        def started(chapter: str) -> None:
            progress.update(task, description=f"running {chapter}")

        def finished(result: coursecheck.Result) -> None:
            progress.advance(task)

        try:
            progress.update(task, total=len(coursecheck.chapters_of(course_dir(classroom))))
            results = coursecheck.check(classroom, jobs=jobs, timeout=timeout, on_start=started, on_done=finished)
        except (coursecheck.CheckError, bootstrap.BootstrapError) as exc:
            raise fail(str(exc)) from None
    table = Table(title=f"course check: {course_dir(classroom)}")
    table.add_column("chapter", overflow="fold")
    table.add_column("status")
    table.add_column("seconds", justify="right")
    for result in results:
        status = f"[green]{result.status}[/green]" if result.passed else f"[red]{result.status}[/red]"
        table.add_row(result.chapter, status, f"{result.seconds:.1f}")
    Console().print(table)
    failed = [result for result in results if not result.passed]
    for result in failed:
        console.print(f"[red]{result.status}:[/red] {result.chapter}: {result.error}", soft_wrap=True, highlight=False)
    if failed:
        console.print(f"{len(failed)} of {len(results)} chapters failed", highlight=False)
        raise typer.Exit(1)



@course_app.command("data")
def course_data(config_file: ConfigOption = DEFAULT_CONFIG) -> None:
    """Fetch the data sets the chapters use, once, into the read-only volume every student mounts."""
    classroom = load(config_file)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("reading d2l's DATA_HUB in the student image", total=None)

        def started(name: str, file: str) -> None:
            progress.update(task, description=f"fetching {name} ({file})")

        def finished(fetched: coursedata.Fetched) -> None:
            progress.advance(task)

        try:
            needs = coursedata.scan(course_dir(classroom), classroom.course.data)
            progress.update(task, total=len(needs.names))
            results = coursedata.fetch(classroom, course_dir(classroom), on_start=started, on_done=finished)
        except (coursedata.DataError, coursecheck.CheckError, bootstrap.BootstrapError) as exc:
            raise fail(str(exc)) from None
    if not results:
        typer.echo("the chapters use no data sets and classroom.yaml lists none: nothing to fetch")
        return
    table = Table(title=f"data sets in volume {data_volume(classroom)}")
    for column in ("data set", "file", "status", "MB", "asked for by"):
        table.add_column(column, overflow="fold")
    for result in results:
        status = f"[red]{result.status}[/red]" if result.status == "failed" else result.status
        table.add_row(result.name, result.file, status, f"{result.bytes / 1e6:.1f}", ", ".join(result.asked_by))
    Console().print(table)
    failed = [result for result in results if result.status == "failed"]
    for result in failed:
        console.print(f"[red]failed:[/red] {result.name}: {result.error}", soft_wrap=True, highlight=False)
    if failed:
        raise typer.Exit(1)


if __name__ == "__main__":  # `python -m d2lhub.cli` runs this checkout without installing it
    app()
