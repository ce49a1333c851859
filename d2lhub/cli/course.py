"""`d2lhub course build|check|data` and `d2lhub images build`: the chapters and the images students run."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from d2lhub import engine, labels
from d2lhub.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    console,
    fail,
    load,
    load_to_write,
    say,
)
from d2lhub.config import Classroom
from d2lhub.course import check as coursecheck
from d2lhub.course.manifest import CourseError, CourseManifest
from d2lhub.ops import bootstrap
from d2lhub.state import course_dir

course_app = typer.Typer(help="Build and check the course chapters.", no_args_is_help=True)
images_app = typer.Typer(help="Build the student images.", no_args_is_help=True)


def build_course(classroom: Classroom, source: str | None = None) -> CourseManifest:
    from d2lhub.course import build  # d2lbook and nbformat: only for this verb

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("importing chapters", total=None)

        def advance(done: int, total: int, name: str) -> None:
            progress.update(task, completed=done, total=total, description=f"importing {name}")

        try:
            return build.build_course(source or classroom.course.source, course_dir(classroom), progress=advance)
        except CourseError as exc:
            raise fail(str(exc)) from None


@images_app.command("build")
def images_build(config_file: ConfigOption = DEFAULT_CONFIG) -> None:
    """Build the base and student images (skipped when their inputs are unchanged)."""
    classroom = load(config_file)
    try:
        client = bootstrap.ensure_engine(classroom.hub.state_dir, say=say)
        bootstrap.ensure_base_image(client, classroom, say=say)
        for image in bootstrap.ensure_images(client, classroom, say=say).values():
            typer.echo(image)
    except engine.EngineError as exc:
        raise fail(str(exc)) from None


@course_app.command("build")
def course_build(
    config_file: ConfigOption = DEFAULT_CONFIG,
    source: Annotated[str | None, typer.Option("--from", help="d2l-en folder, git URL or release archive")] = None,
) -> None:
    """Import the chapters (MXNet code and prose only) into the notebooks students get."""
    classroom = load_to_write(config_file, "build the course")
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
        except (coursecheck.CheckError, engine.EngineError) as exc:
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
    from d2lhub.course import data as coursedata  # nbformat: only for this verb

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
        except (coursedata.DataError, coursecheck.CheckError, engine.EngineError) as exc:
            raise fail(str(exc)) from None
    if not results:
        typer.echo("the chapters use no data sets and classroom.yaml lists none: nothing to fetch")
        return
    table = Table(title=f"data sets in volume {labels.data_volume(classroom.spawner.instance)}")
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
