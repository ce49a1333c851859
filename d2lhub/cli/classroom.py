"""The classroom as a whole: `up`, `down`, `status`, `prestart`, `backup`, `restore`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from d2lhub import engine, homefs, ltistate
from d2lhub.cli import common
from d2lhub.cli.common import DEFAULT_CONFIG, ConfigOption
from d2lhub.cli.course import build_all
from d2lhub.config import ConfigError
from d2lhub.hub import facts
from d2lhub.ops import backup, bootstrap, hubprocess, quotas
from d2lhub.sizes import parse_size
from d2lhub.state import account_passwords, public_url


def up(config_file: ConfigOption = DEFAULT_CONFIG) -> None:
    """Set up whatever is missing, start the hub, print its URL and the demo sign-ins."""
    classroom = common.load_to_write(config_file, "start the hub")
    # the sign-in's secret and provider first: a mistake there is one line naming the key, before any build
    common.run_or_fail(lambda: facts.sign_in_facts(classroom), ConfigError)

    def start() -> None:
        for image in bootstrap.ensure_all(classroom, say=common.say).values():
            common.say(f"student image {image}")
        for course_id, manifest in build_all(classroom).items():
            common.say(f"course {course_id}: {len(manifest.chapters)} chapters")
        hubprocess.start(classroom, config_file)

    common.run_or_fail(start, engine.EngineError, hubprocess.HubError)
    roles = {a.name: a.role for a in classroom.auth.accounts}
    typer.echo(f"\nThe classroom is up: {public_url(classroom)}")
    identity = classroom.auth.oidc or classroom.auth.ldap
    if identity is not None:
        where = classroom.auth.oidc.issuer if classroom.auth.oidc else classroom.auth.ldap.server
        typer.echo(f"Sign in with {classroom.auth.kind} ({where}): members of {', '.join(identity.every_group())}")
    elif classroom.auth.kind == "lti13":
        typer.echo("Students sign in from the LMS. Register the tool there (LTI 1.3) with:")
        for name, url in ltistate.tool_urls(classroom).items():
            typer.echo(f"  {name}: {url}")
    else:
        typer.echo("Sign in as:")
        for name, password in account_passwords(classroom).items():
            typer.echo(f"  {name} / {password} ({roles[name]})")
    typer.echo("\nStop it with `make down` (students' files stay).")


def down(config_file: ConfigOption = DEFAULT_CONFIG) -> None:
    """Stop the hub and the student servers; student volumes stay."""
    classroom = common.load(config_file)
    stopped_hub = hubprocess.stop(classroom)
    servers = hubprocess.stop_servers(classroom) if engine.engine_answers() else 0
    typer.echo(f"hub {'stopped' if stopped_hub else 'was not running'}; {servers} student server(s) stopped")


def status(config_file: ConfigOption = DEFAULT_CONFIG) -> None:
    """Who is running where: users, server state, container, image; on a Swarm, each node with its students,
    the GPUs in use and how many more students fit."""
    classroom = common.load(config_file)
    common.require_hub(classroom)
    homes = common.run_or_fail(lambda: quotas.home_usage(classroom), homefs.QuotaError)
    common.table(
        f"{classroom.course.name} — {public_url(classroom)}",
        ("user", "role", "server", "container", "image", "last activity", "home (used / limit)"),
        ((row.user, row.role, row.server, row.container, row.image, row.last_activity, homes.get(row.user, "-"))
         for row in hubprocess.status(classroom)),
    )
    if classroom.spawner.kind == "swarm":
        from d2lhub.cli.scaleout import show_nodes
        from d2lhub.ops.nodes import NodeError

        common.run_or_fail(lambda: show_nodes(classroom, engine.docker_client()), NodeError)


def quota(
    name: Annotated[str, typer.Argument(help="the student (their sign-in name)")],
    size: Annotated[str, typer.Argument(help="their home's new limit, e.g. 8G (kept over limits.home)")],
    config_file: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Set one student's home limit (raise it for a project), at once and at their later starts."""
    classroom = common.load_to_write(config_file, "set a quota")
    try:
        limit = parse_size(size)
    except ValueError as error:
        raise common.fail(f"SIZE: {error}") from None
    typer.echo(common.run_or_fail(lambda: quotas.set_quota(classroom, name, limit), homefs.QuotaError))


def prestart_command(
    config_file: ConfigOption = DEFAULT_CONFIG,
    group: Annotated[str | None, typer.Option("--group", "-g", help="whose servers (default: the students of every course and section)")] = None,
    users: Annotated[list[str] | None, typer.Option("--user", "-u", help="these users instead of a group")] = None,
    parallel: Annotated[int, typer.Option("--parallel", "-p", min=0, help="servers starting at once (0: one per core)")] = 0,
    notebook: Annotated[str | None, typer.Option("--notebook", "-n", help="also open and warm this notebook's kernel "
                                                 "(relative to the home; default: prestart.notebook)")] = None,
    on_schedule: Annotated[bool, typer.Option("--on-schedule", help="keep running, starting them at each time "
                                              "prestart.schedule names (the hub runs this as a service)")] = False,
) -> None:
    """Start the class's servers before the lecture, so students find them running."""
    from d2lhub.ops import prestart

    classroom = common.load(config_file)
    if on_schedule:
        if not classroom.prestart.schedule:
            raise common.fail(f"{config_file}: prestart.schedule is empty; name the lectures' start times there")
        prestart.on_schedule(classroom, lambda line: typer.echo(f"[lecture-prestart] {line}", err=True))
        return
    common.require_hub(classroom)
    members = common.run_or_fail(lambda: prestart.class_members(classroom, group, users or []), prestart.PrestartError)
    with common.progress(transient=False) as shown:
        task = shown.add_task("starting servers", total=len(members))
        outcomes = prestart.prestart(classroom, members, parallel,
                                     lambda outcome: shown.advance(task), notebook or classroom.prestart.notebook)
    common.table(
        f"{len(members)} server(s); idle ones stop after {classroom.culling.timeout} s",
        ("user", "server", "seconds", "reason"),
        ((outcome.user, outcome.state, f"{outcome.seconds:.1f}" if outcome.seconds else "", outcome.reason)
         for outcome in outcomes),
    )
    if any(outcome.state == "failed" for outcome in outcomes):
        raise typer.Exit(1)


def backup_command(
    config_file: ConfigOption = DEFAULT_CONFIG,
    out: Annotated[Path, typer.Option("--out", "-o", help="the archive to write")] = Path("d2lhub-backup.tar.gz"),
) -> None:
    """Hub database, gradebook, exchange and student volumes into one archive."""
    classroom = common.load(config_file)
    manifest = common.run_or_fail(
        lambda: backup.backup(classroom, out, say=common.say), backup.BackupError, engine.EngineError
    )
    typer.echo(f"wrote {out}: state folder and {len(manifest['volumes'])} volume(s)")


def restore_command(
    archive: Annotated[Path, typer.Argument(help="an archive written by `d2lhub backup`")],
    config_file: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Put a backup onto a fresh hub (empty state folder, no volumes yet); then `make up`."""
    classroom = common.load_to_write(config_file, "restore")
    manifest = common.run_or_fail(
        lambda: backup.restore(classroom, archive, say=common.say), backup.BackupError, engine.EngineError
    )
    typer.echo(f"restored {archive} into {classroom.hub.state_dir} and {len(manifest['volumes'])} volume(s)")
