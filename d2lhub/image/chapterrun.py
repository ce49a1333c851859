"""Run course chapters top to bottom the way a student would, inside a student container.

`d2lhub course check` mounts this file into a throwaway container of the
student image (stdlib + the image's nbclient and delivery script). The course
is delivered into a scratch home exactly as at a student's start, data links
included, and every chapter runs from its own folder so `../data` resolves as
it does for students. Each chapter's start and result is one JSON line on
stdout, so the host can show progress while the container works.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, "/opt/d2lhub")  # the image's copy of d2lhub/image/delivery.py

import delivery  # noqa: E402
import nbformat  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError  # noqa: E402


def emit(**event: object) -> None:
    print(json.dumps(event), flush=True)


def failing_cell(nb: nbformat.NotebookNode) -> int | None:
    """1-based number of the first code cell with an error output, as a student counts them."""
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    for number, cell in enumerate(code_cells, start=1):
        if any(output.get("output_type") == "error" for output in cell.get("outputs", [])):
            return number
    return None


def run_chapter(path: Path, timeout: int) -> tuple[str, str]:
    """(outcome, detail) for one notebook executed in a fresh kernel: ok, needs data (its name),
    timed out, broken (the first error)."""
    nb = nbformat.read(path, as_version=4)
    if not any(cell.cell_type == "code" and cell.source.strip() for cell in nb.cells):
        return "ok", ""  # an index page: nothing to run, no kernel to start
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    try:
        client.execute()
    except CellExecutionError as exc:
        missing = re.match(r"data set '([^']+)'", exc.evalue or "")
        if exc.ename == "DataNotCached" and missing:  # d2lhub_datacache: not in the class's cache
            return "needs data", missing.group(1)
        cell = failing_cell(nb)
        where = f"cell {cell}: " if cell else ""
        return "broken", f"{where}{exc.ename}: {exc.evalue}"
    except CellTimeoutError:
        return "timed out", f"a cell ran longer than {timeout}s"
    except DeadKernelError:
        return "broken", "the kernel died (out of memory?)"
    return "ok", ""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--course", type=Path, default=Path("/srv/d2l/course"))
    parser.add_argument("--timeout", type=int, default=600, help="seconds a cell may run")
    parser.add_argument("chapters", nargs="+", help="notebook paths relative to the course")
    args = parser.parse_args(argv)
    home = Path.home()
    delivery.sync(args.course, home)
    target = home / "d2l"
    delivery.link_data(delivery.SHARED_DATA, target / delivery.DATA_FOLDER)
    for chapter in args.chapters:
        emit(event="start", chapter=chapter)
        started = time.monotonic()
        try:
            status, error = run_chapter(target / chapter, args.timeout)
        except Exception as exc:  # an unreadable notebook or a kernel that won't start fails this chapter only
            status, error = "broken", f"{type(exc).__name__}: {exc}"
        emit(event="done", chapter=chapter, outcome=status, seconds=round(time.monotonic() - started, 2), detail=error)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
