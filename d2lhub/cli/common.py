"""What every `d2lhub` verb shares: loading classroom.yaml, one-line errors, progress and tables."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Column, Table

from d2lhub import config, diskspace, hubapi
from d2lhub.state import public_url

T = TypeVar("T")
console = Console(stderr=True)
ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="the classroom file", envvar="D2LHUB_CONFIG")]
DEFAULT_CONFIG = Path("classroom.yaml")


def fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(2)


def run_or_fail(fn: Callable[[], T], *errors: type[Exception]) -> T:
    """fn(), with each of the listed exceptions turned into the one-line `fail` (exit 2)."""
    try:
        return fn()
    except errors as exc:
        raise fail(str(exc)) from None


def load(path: Path) -> config.Classroom:
    return run_or_fail(lambda: config.load(path), config.ConfigError)


def load_to_write(path: Path, what: str) -> config.Classroom:
    """The classroom, for a command that writes to its state folder: refused up front when that disk is full."""
    classroom = load(path)
    run_or_fail(lambda: diskspace.check(classroom, what), diskspace.DiskFull)
    return classroom


def require_hub(classroom: config.Classroom) -> None:
    """Fail in one line when no hub answers (the verb talks to a running one)."""
    if not hubapi.answers(classroom):
        raise fail(f"no hub answers at {public_url(classroom)}; start it with `make up`")


def say(message: str) -> None:
    console.print(f"[dim]d2lhub:[/dim] {message}", highlight=False)


def progress(*, transient: bool = True, counted: bool = True) -> Progress:
    """A progress display on stderr. Counted: what runs, a bar, done of total and the time taken;
    otherwise rich's own columns (a bar, percent done, time left)."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns if counted else (), console=console, transient=transient)


def table(title: str, columns: Iterable[str | Column], rows: Iterable[Iterable[str]]) -> None:
    """Print a table on stdout: a column is its header, or a `Column` with its own justify or overflow."""
    printed = Table(*columns, title=title)
    for row in rows:
        printed.add_row(*row)
    Console().print(printed)
