"""Past one machine: `d2lhub nodes list|add|drain` and `d2lhub export z2jh`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from d2lhub import engine, studentimage
from d2lhub.cli import common
from d2lhub.cli.common import DEFAULT_CONFIG, ConfigOption
from d2lhub.ops import nodes, z2jh

nodes_app = typer.Typer(help="The Swarm's nodes: list, add, drain, capacity.", no_args_is_help=True)
export_app = typer.Typer(help="Write the classroom's settings for another platform.", no_args_is_help=True)


@export_app.command("z2jh")
def export_z2jh(
    config_file: ConfigOption = DEFAULT_CONFIG,
    output: Annotated[Path, typer.Option("--output", "-o", help="the values file to write")] = Path("values.yaml"),
    registry: Annotated[str, typer.Option(help="registry the images are pushed to, e.g. ghcr.io/my-uni")] = "",
) -> None:
    """A zero-to-jupyterhub Helm values file with the same images, profiles, limits and culling."""
    import yaml

    classroom = common.load(config_file)

    def images_by_key() -> dict[str, str]:
        client = engine.docker_client()
        keys = studentimage.images_in_use(classroom)
        return {key: studentimage.student_image(classroom, client, key) for key in keys}

    images = common.run_or_fail(images_by_key, engine.EngineError)
    output.write_text(yaml.safe_dump(z2jh.values(classroom, images, registry), sort_keys=False))
    typer.echo(f"wrote {output}; push {', '.join(images.values())} to {registry or 'your registry'}, then "
               f"`helm upgrade --install classroom jupyterhub/jupyterhub -f {output}`")


def swarm_client():
    if not engine.engine_answers():
        raise common.fail("no Docker engine answers: start Docker and try again")
    return engine.docker_client()


def show_nodes(classroom, client) -> None:
    """Each node: its resources, this hub's students there, the GPUs they hold, the students of each
    profile that still fit, and whether the students' packet rules are kept there."""
    from d2lhub.ops import nodeguard

    found = nodes.list_nodes(client)
    used = nodes.usage(client, classroom.spawner.instance)
    guards = nodeguard.guarded_nodes(client, classroom.spawner.instance)
    hub_node = client.info()["Swarm"].get("NodeID")

    def rules(node) -> str:
        if not classroom.spawner.firewall:
            return "off"
        return "the hub's" if node.id == hub_node else guards.get(node.id, "missing")

    rows = []
    for node in found:
        use = used.get(node.id, nodes.NodeUse())
        rows.append((
            node.hostname, node.role, f"{node.state}/{node.availability}", f"{node.cpus:g}",
            f"{node.memory / 1024**3:.1f}G", ",".join(node.gpus) or "-", ",".join(sorted(use.gpus)) or "-",
            str(len(use.students)), rules(node),
            *(str(nodes.fits_on(node, classroom, p.name, use)) for p in classroom.profiles),
        ))
    common.table(
        "Swarm nodes",
        ("node", "role", "state", "CPUs", "memory", "GPUs", "GPUs in use", "students", "packet rules",
         *(f"free: {p.name}" for p in classroom.profiles)),
        rows,
    )
    for node in found:
        if students := used.get(node.id, nodes.NodeUse()).students:
            typer.echo(f"on {node.hostname}: {', '.join(students)}")
    totals = nodes.capacity(found, classroom)
    typer.echo("capacity (students at once, if all chose it): "
               + ", ".join(f"{name} {count}" for name, count in totals.items()))


@nodes_app.command("list")
def nodes_list(config_file: ConfigOption = DEFAULT_CONFIG) -> None:
    """The Swarm's nodes: resources and GPUs, the students on each and the GPUs they hold, how many more
    students fit per profile, and whether the students' packet rules are kept there."""
    classroom = common.load(config_file)
    common.run_or_fail(lambda: show_nodes(classroom, swarm_client()), nodes.NodeError)


@nodes_app.command("add")
def nodes_add(
    hostname: Annotated[str, typer.Argument(help="the new node's hostname")],
    gpus: Annotated[str, typer.Option(help="its GPU ids, e.g. 0,1 (nvidia-smi -L)")] = "",
    script: Annotated[bool, typer.Option("--script", help="print only the node's script, e.g. for `| ssh root@NODE sh`")] = False,
    config_file: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """What a new node runs to join (trust the hub's registry, join the Swarm); label its GPUs once it is in."""
    classroom = common.load(config_file)
    ids = tuple(gpu.strip() for gpu in gpus.split(",") if gpu.strip())
    client = swarm_client()
    lines = common.run_or_fail(lambda: nodes.join_script(client, classroom), nodes.NodeError)
    if script:
        typer.echo(lines)
        return
    labels = nodes.node_labels(ids)
    try:
        nodes.label(client, hostname, labels)
        typer.echo(f"{hostname} is in the Swarm; labelled {labels or '(no GPUs)'}")
    except nodes.NodeError:
        typer.echo(f"On {hostname}, as root (or: d2lhub nodes add {hostname} --script | ssh root@{hostname} sh):\n")
        typer.echo(lines)
        if labels:
            typer.echo(f"\nThen, here: d2lhub nodes add {hostname} --gpus {gpus}   (labels its GPUs)")


@nodes_app.command("drain")
def nodes_drain(
    hostname: Annotated[str, typer.Argument(help="the node to empty")],
    yes: Annotated[bool, typer.Option("--yes", help="drain even with students running there")] = False,
    config_file: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Stop scheduling on a node; warns first when students' servers run there (draining stops them). With
    spawner.homes: node, the homes it holds then move to the other nodes."""
    classroom = common.load(config_file)
    client = swarm_client()
    try:
        running = nodes.students_on(client, hostname, classroom.spawner.instance)
        if running and not yes:
            raise common.fail(f"{len(running)} student server(s) run on {hostname} ({', '.join(running)}); "
                       "draining stops them: ask them to save, then run again with --yes")
        nodes.drain(client, hostname)
        typer.echo(f"{hostname} drained" + (f"; {len(running)} server(s) stopped" if running else ""))
        if classroom.spawner.homes == "node":
            moved = nodes.move_homes(client, classroom, hostname, say=typer.echo)
            typer.echo(f"{len(moved)} home(s) moved off {hostname}; it may leave the Swarm now")
    except nodes.NodeError as exc:
        raise common.fail(str(exc)) from None
