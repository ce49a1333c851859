"""What every `d2lhub` verb shares: loading classroom.yaml, one-line errors, progress words."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from d2lhub import config, diskspace

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
