"""Put every released exercise a student does not have yet into ~/exercises, as nbgrader's fetch would.

Runs inside a student's container at every start, after the course sync (stdlib only, it is
copied into the image; see images/student/d2lhub-start). The exchange folder of each course the
student is in is mounted read-only at /srv/nbgrader/exchange/<course>/, and students' nbgrader is
configured with `Exchange.assignment_dir = /home/jovyan/exercises` (d2lhub/grading/layout.py), so
nbgrader's own fetch, its Assignments tab and its submit all use ~/exercises/<assignment>/; a
student of several courses has nbgrader's multi-course layout, ~/exercises/<course>/<assignment>/,
and so does this fetch (below, <name> is then `<course>/<assignment>`).

The rules:
- an assignment released in the exchange that the student has no ~/exercises/<name> for is
  copied there the way nbgrader's ExchangeFetchAssignment does it (copytree, same ignored
  names), through a hidden partial folder renamed into place, so a start that dies half-way
  never leaves a half-fetched assignment behind; the Assignments tab then lists it as fetched;
- a ~/exercises/<name> the student already has is never touched. When the instructor has
  released a different version since it was fetched, that version is put beside it as
  ~/exercises/<name>.new/ (replaced by each later release);
- a folder ~/<name> that a fetch made before fetches went into ~/exercises (it holds every
  notebook of the release) is moved to ~/exercises/<name>, so the work in it is what is
  submitted; nothing is moved when ~/exercises/<name> exists;
- a student who deletes ~/exercises/<name> gets a fresh copy at their next start;
- a student of one course who joins another: their ~/exercises/<assignment> moves to
  ~/exercises/<course>/<assignment> of the course it was fetched from, so what they worked on is
  what they submit.

What was released when each assignment was fetched is recorded in `~/.d2lhub/exercises.json`
(a hash of its files). A problem with one assignment is logged and the others go on; the
script always exits 0, so the server starts whatever happens here.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

EXCHANGE = Path("/srv/nbgrader/exchange")
TARGET = "exercises"
STATE_FILE = Path(".d2lhub") / "exercises.json"
BESIDE_SUFFIX = ".new"
# nbgrader's CourseDirectory.ignore default: what its fetch leaves out of the copy.
IGNORE = (".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback")


@dataclass
class Report:
    fetched: list[str] = field(default_factory=list)
    beside: list[str] = field(default_factory=list)  # a new release put beside the student's copy
    moved: list[str] = field(default_factory=list)  # ~/<name> from an earlier fetch moved into ~/exercises
    regrouped: list[str] = field(default_factory=list)  # ~/exercises/<assignment> moved to its course's folder
    failed: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        lines = [f"d2lhub: exercises: fetched {name} into ~/{TARGET}/{name}" for name in self.fetched]
        lines += [f"d2lhub: exercises: moved ~/{name} to ~/{TARGET}/{name}" for name in self.moved]
        lines += [f"d2lhub: exercises: you are in several courses now: moved ~/{TARGET}/{name.split('/', 1)[1]} "
                  f"to ~/{TARGET}/{name}" for name in self.regrouped]
        lines += [
            f"d2lhub: exercises: {name} was released again; your copy is kept, the new one is in ~/{TARGET}/{name}{BESIDE_SUFFIX}"
            for name in self.beside
        ]
        return lines


def released(exchange: Path) -> dict[str, Path]:
    """assignment name (`<course>/<name>` with several courses mounted) -> its folder in the course's
    outbound (those with a notebook), for every course mounted."""
    found: dict[str, Path] = {}
    try:
        courses = sorted(path for path in exchange.iterdir() if path.is_dir())
    except OSError:
        return found
    for course in courses:
        outbound = course / "outbound"
        try:
            entries = sorted(outbound.iterdir())
        except OSError:
            continue
        for folder in entries:
            # No notebook (yet): a release being written right now (workflow.release replaces the
            # folder); it is fetched at a later start rather than half.
            if not folder.name.startswith(".") and folder.is_dir() and any(folder.glob("*.ipynb")):
                found[f"{course.name}/{folder.name}" if len(courses) > 1 else folder.name] = folder
    return found


def ignored(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in IGNORE)


def copy_ignore(_folder: str, names: list[str]) -> set[str]:
    return {name for name in names if ignored(name)}


def release_digest(folder: Path) -> str:
    """A hash of a release's files (the ones a fetch copies), to tell a re-release from the one fetched."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(name for name in dirs if not ignored(name))
        for name in sorted(files):
            if ignored(name):
                continue
            path = Path(root) / name
            digest.update(str(path.relative_to(folder)).encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def copy_into_place(source: Path, target: Path, replace: bool = False) -> None:
    """copytree through a hidden partial folder, renamed onto `target` once complete."""
    partial = target.with_name(f".{target.name}.partial")
    if partial.exists() or partial.is_symlink():
        remove(partial)  # left by a start that died half-way
    shutil.copytree(source, partial, ignore=copy_ignore)
    if replace and (target.exists() or target.is_symlink()):
        remove(target)
    os.rename(partial, target)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def fetched_before(home: Path, name: str, release: Path) -> bool:
    """~/<name> is a fetch from before fetches went into ~/exercises: a folder with every notebook of the release."""
    old = home / name
    if "/" in name or old.is_symlink() or not old.is_dir():
        return False
    notebooks = [path.name for path in release.glob("*.ipynb")]
    return bool(notebooks) and all((old / notebook).is_file() for notebook in notebooks)


def from_one_course(target: Path, state: dict[str, str], name: str, digest: str, names: list[str]) -> Path | None:
    """A student of one course who is now in several: their ~/exercises/<assignment> (nbgrader's layout for
    one course) is to become ~/exercises/<course>/<assignment> (its layout for several) when it is that
    course's: fetched from this very release, or no other course they are in has an assignment of that name."""
    if "/" not in name:
        return None
    assignment = name.split("/", 1)[1]
    earlier = target / assignment
    if assignment not in state or earlier.is_symlink() or not earlier.is_dir():
        return None
    others = [n for n in names if n != name and n.split("/", 1)[1] == assignment]
    return earlier if state[assignment] == digest or not others else None


def fetch_all(exchange: Path, home: Path) -> Report:
    target = home / TARGET
    target.mkdir(parents=True, exist_ok=True)  # nbgrader's Assignments tab changes into it, so it must exist
    state_path = home / STATE_FILE
    try:
        state: dict[str, str] = json.loads(state_path.read_text())
    except (OSError, ValueError):
        state = {}
    report = Report()
    changed = False
    releases = released(exchange)
    for name, source in releases.items():
        destination = target / name
        try:
            digest = release_digest(source)
            destination.parent.mkdir(exist_ok=True)
            if os.path.lexists(destination):
                if state.get(name) is None:
                    state[name] = digest  # fetched from the tab (or before this record): that release is its baseline
                    changed = True
                elif state[name] != digest:
                    copy_into_place(source, target / f"{name}{BESIDE_SUFFIX}", replace=True)
                    state[name] = digest
                    changed = True
                    report.beside.append(name)
                continue
            earlier = from_one_course(target, state, name, digest, list(releases))
            if earlier is not None:
                os.rename(earlier, destination)
                state[name] = state.pop(earlier.name)  # the release it was fetched from: a newer one goes beside
                report.regrouped.append(name)
                changed = True
                continue
            if fetched_before(home, name, source):
                os.rename(home / name, destination)
                report.moved.append(name)
            else:
                copy_into_place(source, destination)
                report.fetched.append(name)
            state[name] = digest
            changed = True
        except OSError as error:
            report.failed.append(name)
            print(f"d2lhub: exercises: could not fetch {name}: {error}", file=sys.stderr)
    if changed:
        state_path.parent.mkdir(parents=True, exist_ok=True)
        partial = state_path.with_name(f".{state_path.name}.partial")
        partial.write_text(json.dumps(state, indent=1, sort_keys=True))
        os.replace(partial, state_path)
    return report


def main(argv: list[str]) -> int:
    exchange = Path(argv[1]) if len(argv) > 1 else EXCHANGE
    try:
        report = fetch_all(exchange, Path.home())
    except Exception as error:  # noqa: BLE001 - the server starts whatever goes wrong here
        print(f"d2lhub: exercises: not fetched ({type(error).__name__}: {error}); starting anyway", file=sys.stderr)
        return 0
    for line in report.lines():
        print(line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
