"""The `d2lhub` command: thin verbs over the modules; bad input exits 2 with one line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from d2lhub import backup, bootstrap, config, content, coursecheck, coursedata, diskspace, hubprocess, nodes, z2jh
from d2lhub.auth import account_passwords
from d2lhub.hubconfig import course_dir, public_url
from d2lhub.spawner import data_volume

app = typer.Typer(help="Run and manage a Dive into Deep Learning classroom hub.", no_args_is_help=True)
course_app = typer.Typer(help="Build and check the course chapters.", no_args_is_help=True)
images_app = typer.Typer(help="Build the student images.", no_args_is_help=True)
app.add_typer(course_app, name="course")
app.add_typer(images_app, name="images")
nodes_app = typer.Typer(help="The Swarm's nodes: list, add, drain, capacity.", no_args_is_help=True)
export_app = typer.Typer(help="Write the classroom's settings for another platform.", no_args_is_help=True)
app.add_typer(nodes_app, name="nodes")
app.add_typer(export_app, name="export")
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


def load_to_write(path: Path, what: str) -> config.Classroom:
    """The classroom, for a command that writes to its state folder: refused up front when that disk is full."""
    classroom = load(path)
    try:
        diskspace.check(classroom, what)
    except diskspace.DiskFull as exc:
        raise fail(str(exc)) from None
    return classroom


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
    classroom = load_to_write(config_file, "start the hub")
    try:
        for image in bootstrap.ensure_all(classroom, say=say).values():
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


@app.command("prestart")
def prestart_command(
    config_file: ConfigOption = DEFAULT_CONFIG,
    group: Annotated[str | None, typer.Option("--group", "-g", help="whose servers (default: the course's students)")] = None,
    users: Annotated[list[str] | None, typer.Option("--user", "-u", help="these users instead of a group")] = None,
    parallel: Annotated[int, typer.Option("--parallel", "-p", min=0, help="servers starting at once (0: one per core)")] = 0,
    notebook: Annotated[str | None, typer.Option("--notebook", "-n", help="also open and warm this notebook's kernel "
                                                 "(relative to the home; default: prestart.notebook)")] = None,
    on_schedule: Annotated[bool, typer.Option("--on-schedule", help="keep running, starting them at each time "
                                              "prestart.schedule names (the hub runs this as a service)")] = False,
) -> None:
    """Start the class's servers before the lecture, so students find them running."""
    from d2lhub import prestart

    classroom = load(config_file)
    if on_schedule:
        if not classroom.prestart.schedule:
            raise fail(f"{config_file}: prestart.schedule is empty; name the lectures' start times there")
        prestart.on_schedule(classroom, lambda line: typer.echo(f"[lecture-prestart] {line}", err=True))
        return
    if not hubprocess.answers(classroom):
        raise fail(f"no hub answers at {public_url(classroom)}; start it with `make up`")
    try:
        members = prestart.class_members(classroom, group, users or [])
    except prestart.PrestartError as exc:
        raise fail(str(exc)) from None
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task("starting servers", total=len(members))
        outcomes = prestart.prestart(classroom, members, parallel,
                                     lambda outcome: progress.advance(task), notebook or classroom.prestart.notebook)
    table = Table(title=f"{len(members)} server(s); idle ones stop after {classroom.culling.timeout} s")
    for column in ("user", "server", "seconds", "reason"):
        table.add_column(column)
    for outcome in outcomes:
        table.add_row(outcome.user, outcome.state, f"{outcome.seconds:.1f}" if outcome.seconds else "", outcome.reason)
    Console().print(table)
    if any(outcome.state == "failed" for outcome in outcomes):
        raise typer.Exit(1)


@images_app.command("build")
def images_build(config_file: ConfigOption = DEFAULT_CONFIG) -> None:
    """Build the base and student images (skipped when their inputs are unchanged)."""
    classroom = load(config_file)
    try:
        client = bootstrap.ensure_engine(classroom.hub.state_dir, say=say)
        bootstrap.ensure_base_image(client, classroom, say=say)
        for image in bootstrap.ensure_images(client, classroom, say=say).values():
            typer.echo(image)
    except bootstrap.BootstrapError as exc:
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


@export_app.command("z2jh")
def export_z2jh(
    config_file: ConfigOption = DEFAULT_CONFIG,
    output: Annotated[Path, typer.Option("--output", "-o", help="the values file to write")] = Path("values.yaml"),
    registry: Annotated[str, typer.Option(help="registry the images are pushed to, e.g. ghcr.io/my-uni")] = "",
) -> None:
    """A zero-to-jupyterhub Helm values file with the same images, profiles, limits and culling."""
    import yaml

    classroom = load(config_file)
    try:
        client = bootstrap.docker_client()
        images = {key: bootstrap.student_image(classroom, client, key) for key in bootstrap.images_in_use(classroom)}
    except bootstrap.BootstrapError as exc:
        raise fail(str(exc)) from None
    output.write_text(yaml.safe_dump(z2jh.values(classroom, images, registry), sort_keys=False))
    typer.echo(f"wrote {output}; push {', '.join(images.values())} to {registry or 'your registry'}, then "
               f"`helm upgrade --install classroom jupyterhub/jupyterhub -f {output}`")


def swarm_client():
    if not bootstrap.engine_answers():
        raise fail("no Docker engine answers: start Docker and try again")
    return bootstrap.docker_client()


@nodes_app.command("list")
def nodes_list(config_file: ConfigOption = DEFAULT_CONFIG) -> None:
    """The Swarm's nodes, their resources and GPUs, and how many students fit at once per profile."""
    classroom = load(config_file)
    try:
        found = nodes.list_nodes(swarm_client())
    except nodes.NodeError as exc:
        raise fail(str(exc)) from None
    table = Table(title="Swarm nodes")
    for column in ("node", "role", "state", "availability", "CPUs", "memory", "GPUs",
                   *(f"fits: {p.name}" for p in classroom.profiles)):
        table.add_column(column)
    for node in found:
        table.add_row(node.hostname, node.role, node.state, node.availability, f"{node.cpus:g}",
                      f"{node.memory / 1024**3:.1f}G", ",".join(node.gpus) or "-",
                      *(str(nodes.fits_on(node, classroom, p.name)) for p in classroom.profiles))
    Console().print(table)
    totals = nodes.capacity(found, classroom)
    typer.echo("capacity (students at once, if all chose it): "
               + ", ".join(f"{name} {count}" for name, count in totals.items()))


@nodes_app.command("add")
def nodes_add(
    hostname: Annotated[str, typer.Argument(help="the new node's hostname")],
    gpus: Annotated[str, typer.Option(help="its GPU ids, e.g. 0,1 (nvidia-smi -L)")] = "",
    config_file: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Print the join command for a new node; label it (GPUs) once it has joined."""
    load(config_file)
    ids = tuple(gpu.strip() for gpu in gpus.split(",") if gpu.strip())
    client = swarm_client()
    try:
        command = nodes.join_command(client)
    except nodes.NodeError as exc:
        raise fail(str(exc)) from None
    labels = nodes.node_labels(ids)
    try:
        nodes.label(client, hostname, labels)
        typer.echo(f"{hostname} is in the Swarm; labelled {labels or '(no GPUs)'}")
    except nodes.NodeError:
        typer.echo(f"On {hostname}, run:\n  {command}")
        if labels:
            label_args = " ".join(f"--label-add {k}={v}" for k, v in labels.items())
            typer.echo(f"Then, here: d2lhub nodes add {hostname} --gpus {gpus}"
                       f"   (or: docker node update {label_args} {hostname})")


@nodes_app.command("drain")
def nodes_drain(
    hostname: Annotated[str, typer.Argument(help="the node to empty")],
    yes: Annotated[bool, typer.Option("--yes", help="drain even with students running there")] = False,
    config_file: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Stop scheduling on a node; warns first when students' servers run there (draining stops them)."""
    classroom = load(config_file)
    client = swarm_client()
    try:
        running = nodes.students_on(client, hostname, classroom.spawner.instance)
        if running and not yes:
            raise fail(f"{len(running)} student server(s) run on {hostname} ({', '.join(running)}); "
                       "draining stops them: ask them to save, then run again with --yes")
        nodes.drain(client, hostname)
    except nodes.NodeError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"{hostname} drained" + (f"; {len(running)} server(s) stopped" if running else ""))


@app.command("backup")
def backup_command(
    config_file: ConfigOption = DEFAULT_CONFIG,
    out: Annotated[Path, typer.Option("--out", "-o", help="the archive to write")] = Path("d2lhub-backup.tar.gz"),
) -> None:
    """Hub database, gradebook, exchange and student volumes into one archive."""
    classroom = load(config_file)
    try:
        manifest = backup.backup(classroom, out, say=say)
    except (backup.BackupError, bootstrap.BootstrapError) as exc:
        raise fail(str(exc)) from None
    typer.echo(f"wrote {out}: state folder and {len(manifest['volumes'])} volume(s)")


@app.command("restore")
def restore_command(
    archive: Annotated[Path, typer.Argument(help="an archive written by `d2lhub backup`")],
    config_file: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Put a backup onto a fresh hub (empty state folder, no volumes yet); then `make up`."""
    classroom = load_to_write(config_file, "restore")
    try:
        manifest = backup.restore(classroom, archive, say=say)
    except (backup.BackupError, bootstrap.BootstrapError) as exc:
        raise fail(str(exc)) from None
    typer.echo(f"restored {archive} into {classroom.hub.state_dir} and {len(manifest['volumes'])} volume(s)")


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

    classroom = load_to_write(config_file, "import a roster")
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
    classroom = load_to_write(config_file, f"release {name}")
    target = grading_step(lambda g: g.release(classroom, name))
    typer.echo(f"released {name} ({target})")


@assignment_app.command("collect")
def assignment_collect(name: str, config_file: ConfigOption = DEFAULT_CONFIG) -> None:
    """Collect each student's latest own submission of NAME; forged ones are set aside and listed."""
    classroom = load_to_write(config_file, f"collect {name}")
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

    classroom = load_to_write(config_file, f"autograde {name}")
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
    classroom = load_to_write(config_file, f"feedback {name}")
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


if __name__ == "__main__":  # `python -m d2lhub.cli` runs this checkout without installing it
    app()
