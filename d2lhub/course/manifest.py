"""The manifest of a built course (`course.json`): what was imported, in book order.

The hub reads it at every spawn and the start script compares students' copies against
it, so it imports nothing heavy (no d2lbook, no nbformat).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

MANIFEST_NAME = "course.json"


class CourseError(Exception):
    """The book source cannot be imported; the message names the problem and where."""


@dataclass(frozen=True)
class Chapter:
    path: str  # notebook path relative to the course root, posix
    title: str
    part: str
    sha256: str
    gpus: int = 0  # GPUs its code asks for by number; `course check` skips it where a profile gives fewer


@dataclass(frozen=True)
class Skipped:
    path: str  # notebook path the chapter would have had
    title: str
    reason: str


@dataclass
class CourseManifest:
    """What was imported; the hub uses it to tell when a student's copy is outdated."""

    title: str
    chapters: list[Chapter] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # opened by code cells (../img/x.jpg, ../data/y.txt)
    warnings: list[str] = field(default_factory=list)  # `chapter: what is wrong`, e.g. a file its code opens is missing

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    def save(self, path: Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> "CourseManifest":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(
                title=data["title"],
                chapters=[Chapter(**c) for c in data.get("chapters", [])],
                skipped=[Skipped(**s) for s in data.get("skipped", [])],
                images=list(data.get("images", [])),
                files=list(data.get("files", [])),
                warnings=list(data.get("warnings", [])),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CourseError(f"{path}: not a readable course manifest ({exc})") from exc
