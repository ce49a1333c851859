"""Bring a student's ~/d2l up to date with the course, never overwriting their work.

Runs inside the student container at every start (stdlib only, it is copied
into the image). The rules follow nbgitpuller's: a file the student never
touched is refreshed, a new file appears, and a file the student edited stays
as it is, with the new version put beside it. A file is "untouched" when its
hash still equals the hash of the version last delivered, recorded in
`~/.d2lhub/delivered.json`. What changed is written to `~/d2l/UPDATES.md`,
which the student sees beside the chapters.

It also points `~/d2l/data/<file>` at the class's read-only data cache, the
folder d2l downloads into (`../data` from a chapter), so d2l finds each file
with the right SHA-1 and never downloads it.

On a hub with several courses the hub mounts each course of the student's at
`/srv/d2l/course/<course>/`: the same sync then fills `~/d2l/<course>/`, and each
course folder gets its own `data/` links.

With `--exercises` (students' servers, see images/student/d2lhub-start) the same
process then fetches released exercises into ~/exercises (exercises.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

STATE_FILE = Path(".d2lhub") / "delivered.json"
NOTE_NAME = "UPDATES.md"
MANIFEST_NAME = "course.json"  # each built course's root holds one (d2lhub/course/manifest.py)
DATA_FOLDER = "data"  # d2l's `../data`, seen from a chapter folder
SHARED_DATA = Path("/srv/d2l/data/d2l")


@dataclass
class Report:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # edited by the student; new version put beside

    def summary(self) -> str:
        parts = [f"{len(self.added)} new", f"{len(self.updated)} updated"]
        if self.kept:
            parts.append(f"{len(self.kept)} kept as you edited them (new version beside: *.new.ipynb)")
        return "chapters: " + ", ".join(parts)


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def beside_name(relative: str) -> str:
    """`ch/x.ipynb` -> `ch/x.new.ipynb`: where the new version of an edited chapter goes."""
    path = Path(relative)
    return str(path.with_name(f"{path.stem}.new{path.suffix}"))


def copy_atomically(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    shutil.copyfile(source, partial)
    os.replace(partial, target)


def course_files(course: Path) -> dict[str, Path]:
    return {
        str(path.relative_to(course)): path
        for path in sorted(course.rglob("*"))
        if path.is_file() and not path.name.startswith(".")
    }


def sync(course: Path, home: Path, target_name: str = "d2l") -> Report:
    state_path = home / STATE_FILE
    try:
        delivered: dict[str, str] = json.loads(state_path.read_text())
    except (FileNotFoundError, ValueError):
        delivered = {}
    first_delivery = not delivered
    target = home / target_name
    report = Report()
    for relative, source in course_files(course).items():
        new_hash = file_hash(source)
        destination = target / relative
        if not destination.exists():
            copy_atomically(source, destination)
            report.added.append(relative)
        else:
            current = file_hash(destination)
            if current == new_hash or delivered.get(relative) == new_hash:
                pass  # up to date, or the course has not changed since the student's edit
            elif delivered.get(relative) == current:
                copy_atomically(source, destination)
                report.updated.append(relative)
            else:
                copy_atomically(source, target / beside_name(relative))
                report.kept.append(relative)
        delivered[relative] = new_hash
    state_path.parent.mkdir(parents=True, exist_ok=True)
    partial = state_path.with_name(f".{state_path.name}.partial")
    partial.write_text(json.dumps(delivered, indent=1, sort_keys=True))
    os.replace(partial, state_path)
    note = note_text(report)
    if not first_delivery and note:
        write_note(target / NOTE_NAME, note)
    return report


def note_text(report: Report) -> str:
    """What the last course update changed, in words a student reads; empty when no chapter changed."""

    def chapters(names: list[str]) -> list[str]:
        return [name for name in names if name.endswith(".ipynb")]  # not the images and manifest beside them

    sections = [
        ("New chapters:", [f"- {name}" for name in chapters(report.added)]),
        ("Refreshed (you had not changed them):", [f"- {name}" for name in chapters(report.updated)]),
        (
            "Kept as you edited them; the new version is beside yours:",
            [f"- {name}: new version in {beside_name(name)}" for name in chapters(report.kept)],
        ),
    ]
    if not any(items for _, items in sections):
        return ""
    lines = ["# Course updates", "", "The course was updated when your server last started.", ""]
    for title, items in sections:
        if items:
            lines += [title, "", *items, ""]
    return "\n".join(lines)


def write_note(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)


def link_data(shared: Path, folder: Path) -> list[str]:
    """Link each shared data file into the student's writable data folder; returns the new links.

    Only files are linked, never extracted folders: d2l's download_extract
    re-extracts the archive next to it at every call, so what it extracts into
    must be the student's own folder. A name the student already has is left alone.
    """
    if not shared.is_dir():
        return []
    linked = []
    for source in sorted(shared.iterdir()):
        link = folder / source.name
        if source.name.startswith(".") or not source.is_file() or os.path.lexists(link):
            continue
        folder.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source)
        linked.append(source.name)
    return linked


def deliver(course: Path, home: Path) -> None:
    if course.is_dir():
        report = sync(course, home)
        print(f"d2lhub: {report.summary()}", file=sys.stderr)
        for relative in report.kept:
            print(f"d2lhub: you edited {relative}; the new version is at {beside_name(relative)}", file=sys.stderr)
    else:
        print(f"d2lhub: no course mounted at {course}; ~/d2l left as it is", file=sys.stderr)
    for root in course_roots(course):
        linked = link_data(SHARED_DATA, home / "d2l" / root / DATA_FOLDER)
        if linked:
            print(f"d2lhub: {len(linked)} data file(s) linked into {Path('~/d2l', root, DATA_FOLDER)}", file=sys.stderr)


def course_roots(course: Path) -> list[Path]:
    """Where chapters' `../data` is, relative to ~/d2l: each mounted course's folder (several
    courses), or ~/d2l itself (one course, or none mounted)."""
    return sorted(manifest.parent.relative_to(course) for manifest in course.glob(f"*/{MANIFEST_NAME}")) or [Path(".")]


def main(argv: list[str]) -> int:
    """`delivery.py [COURSE] [--exercises]`: with --exercises (students' servers), also fetch the released
    exercises (exercises.py, beside this file) in the same process, which saves a second Python start
    at every spawn. Either failing leaves the other done; a failed course sync exits 1."""
    flags = {arg for arg in argv[1:] if arg.startswith("--")}
    positional = [arg for arg in argv[1:] if not arg.startswith("--")]
    course = Path(positional[0]) if positional else Path("/srv/d2l/course")
    status = 0
    try:
        deliver(course, Path.home())
    except Exception:  # noqa: BLE001 - said, and the exercises still come
        import traceback

        traceback.print_exc()
        status = 1
    if "--exercises" in flags:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        try:
            import exercises  # only students' servers need it
        except ImportError as error:
            print(f"d2lhub: exercises: not fetched ({error})", file=sys.stderr)
        else:
            exercises.main([argv[0]])  # never raises: the server starts whatever happens there
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
