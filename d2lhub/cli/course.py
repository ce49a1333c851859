"""`d2lhub course build|check|data` and `d2lhub images build`: the chapters and the images students run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from d2lhub import engine, labels
from d2lhub.cli import common
from d2lhub.cli.common import DEFAULT_CONFIG, ConfigOption
from d2lhub.config import Classroom
from d2lhub.course import check as coursecheck
from d2lhub.course.manifest import CourseError, CourseManifest
from d2lhub.courses import Course
from d2lhub.ops import bootstrap
from d2lhub.state import built_course

course_app = typer.Typer(help="Build and check the course chapters.", no_args_is_help=True)
images_app = typer.Typer(help="Build the student images.", no_args_is_help=True)


def build_course(classroom: Classroom, source: str | None = None, course: Course | None = None) -> CourseManifest:
    """Build one course (the first, unless named) into where the hub mounts it from."""
    from d2lhub.course import build  # d2lbook and nbformat: only for this verb

    course = course or classroom.course
    with common.progress(counted=False) as shown:
        task = shown.add_task(f"importing {course.id}'s chapters", total=None)

        def advance(done: int, total: int, name: str) -> None:
            shown.update(task, completed=done, total=total, description=f"importing {course.id}: {name}")

        return common.run_or_fail(
            lambda: build.build_course(source or course.source, built_course(classroom, course.id), progress=advance),
            CourseError,
        )


def chosen_courses(classroom: Classroom, only: str | None, one_file: str | None = None) -> list[Course]:
    """Every course of the hub, or the one `only` names; `one_file` names an option that is about one
    course only (refused with several unless --course picks one)."""
    chosen = [course for course in classroom.all_courses if only in (None, course.id)]
    if not chosen:
        raise common.fail(f"no course {only!r} on this hub (there are: {', '.join(c.id for c in classroom.all_courses)})")
    if one_file and len(chosen) > 1:
        raise common.fail(f"{one_file} is about one course: name that course with --course")
    return chosen


def said_of(classroom: Classroom, course_id: str) -> str:
    """`course: ` before what a verb says of one course where the hub has several; nothing with one."""
    return f"{course_id}: " if len(classroom.all_courses) > 1 else ""


def as_the_course(classroom: Classroom, course: Course) -> Classroom:
    """The classroom with `course` as its `course`, which the check and data steps work on."""
    return classroom.model_copy(update={"course": course})


def build_all(classroom: Classroom, only: str | None = None, source: str | None = None) -> dict[str, CourseManifest]:
    """Build every course of the hub, or the one `only` names; course id -> its manifest."""
    chosen = chosen_courses(classroom, only, "--from" if source else None)
    return {course.id: build_course(classroom, source, course) for course in chosen}


@images_app.command("build")
def images_build(config_file: ConfigOption = DEFAULT_CONFIG) -> None:
    """Build the base and student images (skipped when their inputs are unchanged)."""
    classroom = common.load(config_file)

    def build() -> dict[str, str]:
        client = bootstrap.ensure_engine(classroom.hub.state_dir, say=common.say)
        bootstrap.ensure_base_image(client, classroom, say=common.say)
        return bootstrap.ensure_images(client, classroom, say=common.say)

    for image in common.run_or_fail(build, engine.EngineError).values():
        typer.echo(image)


@course_app.command("build")
def course_build(
    config_file: ConfigOption = DEFAULT_CONFIG,
    source: Annotated[str | None, typer.Option("--from", help="d2l-en folder, git URL or release archive")] = None,
    course: Annotated[str | None, typer.Option("--course", help="build only this course (its id); default: every course")] = None,
) -> None:
    """Import the chapters (MXNet code and prose only) into the notebooks students get: every course of
    the hub (each into its own folder when there are several), or the one --course names."""
    classroom = common.load_to_write(config_file, "build the course")
    for course_id, manifest in build_all(classroom, course, source).items():
        named = said_of(classroom, course_id)
        for warning in manifest.warnings:
            common.console.print(f"[yellow]warning:[/yellow] {named}{warning}", soft_wrap=True, highlight=False)
        typer.echo(f"{named}{len(manifest.chapters)} chapters in {built_course(classroom, course_id)} "
                   f"({len(manifest.skipped)} without MXNet code skipped)")


@course_app.command("check")
def course_check(
    config_file: ConfigOption = DEFAULT_CONFIG,
    jobs: Annotated[
        int, typer.Option(min=1, max=16, help="containers running chapters side by side, each with a student's limits")
    ] = 2,
    timeout: Annotated[int, typer.Option(min=10, help="seconds one cell may run")] = 600,
    report: Annotated[
        Path | None, typer.Option("--report", help="where to write the JSON report (default: STATE_DIR/course-check.json; "
                                  "several courses: STATE_DIR/courses/<course>-course-check.json)")
    ] = None,
    course: Annotated[str | None, typer.Option("--course", help="check only this course (its id); default: every course")] = None,
) -> None:
    """Run every built chapter top to bottom in a container like a student's; each is ok, needs data: NAME,
    needs N GPUs (skipped), timed out or broken: first error; exit 1 unless every run chapter is ok."""
    classroom = common.load(config_file)
    failed = [check_one(as_the_course(classroom, chosen), jobs, timeout, report)
              for chosen in chosen_courses(classroom, course, "--report" if report else None)]
    if any(failed):
        raise typer.Exit(1)


def check_one(classroom: Classroom, jobs: int, timeout: int, report: Path | None) -> bool:
    """`course check` of `classroom.course`, its table printed; whether a chapter failed."""
    built = built_course(classroom, classroom.course.id)
    with common.progress() as shown:
        task = shown.add_task("starting the check container", total=None)

        def run() -> list[coursecheck.Result]:
            shown.update(task, total=len(coursecheck.chapters_of(built)))
            return coursecheck.check(
                classroom, jobs=jobs, timeout=timeout, report_path=report,
                on_start=lambda chapter: shown.update(task, description=f"running {chapter}"),
                on_done=lambda result: shown.advance(task),
            )

        results = common.run_or_fail(run, coursecheck.CheckError, engine.EngineError)
    colour = {"ok": "green", "needs GPUs": "yellow"}
    common.table(
        f"course check: {built}",
        (common.Column("chapter", overflow="fold"), common.Column("outcome", overflow="fold"),
         common.Column("seconds", justify="right")),
        ((result.chapter, f"[{colour.get(result.outcome, 'red')}]{escape(result.label)}[/]", f"{result.seconds:.1f}")
         for result in results),
    )
    failed = [result for result in results if not result.passed and not result.skipped]
    for result in failed:
        common.console.print(f"[red]{result.outcome}:[/red] {result.chapter}: {result.detail}", soft_wrap=True, highlight=False)
    counts = ", ".join(f"{sum(r.outcome == o for r in results)} {o}" for o in coursecheck.OUTCOMES)
    common.console.print(f"{counts}; report: {report or coursecheck.report_file(classroom)}", highlight=False)
    if failed:
        common.console.print(f"{len(failed)} of {len(results)} chapters failed", highlight=False)
    return bool(failed)


@course_app.command("data")
def course_data(
    config_file: ConfigOption = DEFAULT_CONFIG,
    listing: Annotated[
        bool, typer.Option("--list", help="list the data sets the chapters need, who needs each, its size, cached or not")
    ] = False,
    source: Annotated[
        Path | None, typer.Option("--from", help="fill the cache from this folder of files fetched elsewhere (no network)")
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option("--manifest", help="write the URLs and SHA-1s to fetch on a machine with internet")
    ] = None,
    course: Annotated[str | None, typer.Option("--course", help="only this course's (its id); default: every course's")] = None,
) -> None:
    """Fetch the data sets the chapters use, once, into the read-only volume every student mounts."""
    classroom = common.load(config_file)
    failed = [data_one(as_the_course(classroom, chosen), listing, source, manifest)
              for chosen in chosen_courses(classroom, course, "--manifest" if manifest else None)]
    if any(failed):
        raise typer.Exit(1)


def data_one(classroom: Classroom, listing: bool, source: Path | None, manifest: Path | None) -> bool:
    """`course data` for `classroom.course` (its chapters, data sets and mirror); whether a fetch failed."""
    from d2lhub.course import data as coursedata  # nbformat: only for this verb

    built = built_course(classroom, classroom.course.id)
    named = said_of(classroom, classroom.course.id)
    errors = (coursedata.DataError, coursecheck.CheckError, engine.EngineError)
    if listing:
        listed = common.run_or_fail(lambda: coursedata.listing(classroom, built), *errors)
        common.table(
            f"{named}data sets the chapters need (volume {labels.data_volume(classroom.spawner.instance)})",
            (common.Column(column, overflow="fold") for column in ("data set", "kind", "in the volume", "cached", "MB", "needed by")),
            ((item.name, item.kind, item.target, "yes" if item.cached else "[red]no[/red]",
              "?" if item.bytes is None else f"{item.bytes / 1e6:.1f}", ", ".join(item.asked_by)) for item in listed),
        )
        missing = sum(not item.cached for item in listed)
        typer.echo(f"{named}{len(listed)} data sets, {missing} not cached" + (": run `d2lhub course data`" if missing else ""))
        return False
    if manifest is not None:
        plan = common.run_or_fail(lambda: coursedata.plan(classroom, built), *errors)
        manifest.write_text(json.dumps(plan, indent=2) + "\n")
        files = sum(len(item["files"]) for item in plan["data_sets"])
        typer.echo(f"{manifest}: {len(plan['data_sets'])} data sets, {files} files to fetch")
        return False
    with common.progress() as shown:
        task = shown.add_task("reading d2l's DATA_HUB in the student image", total=None)

        def fetch() -> list[coursedata.Fetched]:
            needs = coursedata.needs_of(classroom, built)
            shown.update(task, total=len(needs.sets))
            return coursedata.fetch(
                classroom, built, source_dir=source, needs=needs,
                on_start=lambda name, file: shown.update(task, description=f"fetching {name} ({file})"),
                on_done=lambda fetched: shown.advance(task),
            )

        results = common.run_or_fail(fetch, *errors)
    if not results:
        typer.echo(f"{named}the chapters use no data sets and classroom.yaml lists none: nothing to fetch")
        return False
    common.table(
        f"data sets in volume {labels.data_volume(classroom.spawner.instance)}",
        (common.Column(column, overflow="fold") for column in ("data set", "file", "status", "MB", "asked for by")),
        ((result.name, result.file, f"[red]{result.status}[/red]" if result.status == "failed" else result.status,
          f"{result.bytes / 1e6:.1f}", ", ".join(result.asked_by)) for result in results),
    )
    failed = [result for result in results if result.status == "failed"]
    for result in failed:
        common.console.print(f"[red]failed:[/red] {result.name}: {result.error}", soft_wrap=True, highlight=False)
    return bool(failed)
