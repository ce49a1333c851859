"""`d2lhub course data`: fetch what the chapters download, once, into one read-only volume.

Which data sets: the names in `course.data` plus the ones the built chapters
use (`d2l.DATA_HUB['name']`, `d2l.download('name')`,
`d2l.download_extract('name')`, Gluon's vision data sets). A chapter may
register its own file (`d2l.DATA_HUB['name'] = (d2l.DATA_URL + 'file', 'sha1')`);
those entries are read from the chapter, the rest come from d2l's DATA_HUB in
the student image. The fetching itself runs in a container of the student
image (d2lhub/image/datafetch.py) on the host's network, so a mirror on this machine
works, and writes the volume that students then mount read-only.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import docker
import nbformat

from d2lhub import engine
from d2lhub.config import Classroom
from d2lhub.course.check import chapters_of, json_lines
from d2lhub.image.datafetch import GLUON_SETS
from d2lhub.studentimage import DATA_MOUNT, IN_IMAGE_DIR, built_image

FETCHER = IN_IMAGE_DIR / "datafetch.py"
FETCHER_MOUNT = "/opt/d2lhub-tools/datafetch.py"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")

_QUOTED = r"""(['"])([^'"\n]+)\1"""
_DEFINE_RE = re.compile(
    r"DATA_HUB\[\s*(['\"])([^'\"\n]+)\1\s*\]\s*=\s*\(\s*d2l\.DATA_URL\s*\+\s*(['\"])([^'\"\n]+)\3\s*,"
    r"\s*(['\"])([0-9a-fA-F]{40})\5"
)
_USE_RE = re.compile(r"(?:DATA_HUB\[|d2l\.download(?:_extract)?\()\s*" + _QUOTED)
_GLUON_RE = re.compile(r"\b(?:gluon\.data\.vision|vision|datasets)\.(" + "|".join(GLUON_SETS) + r")\s*\(")
_D2L_FASHION_RE = re.compile(r"d2l\.(?:FashionMNIST\s*\(|load_data_fashion_mnist\s*\()")


class DataError(Exception):
    """The data sets cannot be fetched as asked; the message names the data set and the problem."""


@dataclass
class Needs:
    """Data set name -> the chapters (or `classroom.yaml`) asking for it, and chapters' own DATA_HUB entries."""

    names: dict[str, list[str]] = field(default_factory=dict)
    defined: dict[str, tuple[str, str]] = field(default_factory=dict)

    def want(self, name: str, where: str) -> None:
        users = self.names.setdefault(name, [])
        if where not in users:
            users.append(where)


def scan_code(code: str, where: str, needs: Needs) -> None:
    for match in _DEFINE_RE.finditer(code):
        name, file, sha1 = match.group(2), match.group(4), match.group(6).lower()
        known = needs.defined.get(name)
        if known and known != (file, sha1):
            raise DataError(f"{where}: DATA_HUB[{name!r}] is defined differently elsewhere ({known[0]}, {known[1]})")
        needs.defined[name] = (file, sha1)
    for match in _USE_RE.finditer(code):
        if not match.group(2).startswith(("http://", "https://")):
            needs.want(match.group(2), where)
    for match in _GLUON_RE.finditer(code):
        needs.want(match.group(1), where)
    if _D2L_FASHION_RE.search(code):
        needs.want("FashionMNIST", where)


def scan(course: Path, listed: tuple[str, ...] = ()) -> Needs:
    """What the built course needs, in the order it is first asked for."""
    needs = Needs()
    for name in listed:
        needs.want(name, "classroom.yaml")
    for chapter in chapters_of(course):
        nb = nbformat.read(course / chapter, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                scan_code(cell.source, chapter, needs)
    return needs


@dataclass(frozen=True)
class Fetched:
    name: str
    file: str
    status: str  # cached, fetched, failed
    bytes: int
    error: str = ""
    asked_by: tuple[str, ...] = ()


def fetch(
    classroom: Classroom,
    course: Path,
    *,
    on_start: Callable[[str, str], None] = lambda name, file: None,
    on_done: Callable[[Fetched], None] = lambda fetched: None,
    client: docker.DockerClient | None = None,
) -> list[Fetched]:
    """Fetch every needed data set not already in the volume with the right SHA-1."""
    needs = scan(course, classroom.course.data)
    if not needs.names:
        return []
    client = client or engine.docker_client()
    image = built_image(classroom, client)
    request = {
        "data_url": classroom.course.data_url,
        "names": list(needs.names),
        "defined": {name: list(entry) for name, entry in needs.defined.items()},
    }
    environment = {name: os.environ[name] for name in PROXY_VARIABLES if name in os.environ}
    if classroom.course.gluon_repo:
        environment["MXNET_GLUON_REPO"] = classroom.course.gluon_repo
    volume = engine.ensure_data_volume(client, classroom)
    container = client.containers.run(
        image,
        ["python3", FETCHER_MOUNT, json.dumps(request)],
        name=f"{classroom.spawner.instance}-data-{uuid.uuid4().hex[:8]}",
        environment=environment,
        volumes={volume: {"bind": DATA_MOUNT, "mode": "rw"}, str(FETCHER): {"bind": FETCHER_MOUNT, "mode": "ro"}},
        detach=True,
        # root writes the volume (files stay world-readable for the students' uids); the host's
        # network reaches a mirror on this machine as well as the data host
        **engine.throwaway(classroom.spawner.instance, "data-fetch", network="host"),
    )
    results: list[Fetched] = []
    try:
        for event in json_lines(container.logs(stream=True, follow=True, stdout=True, stderr=False)):
            if event["event"] == "unknown":
                raise DataError(
                    "; ".join(
                        f"data set {name!r} (asked for by {', '.join(needs.names[name])}) is neither in d2l's "
                        f"DATA_HUB nor a Gluon data set ({', '.join(GLUON_SETS)}) nor defined by a chapter"
                        for name in event["names"]
                    )
                )
            if event["event"] == "start":
                on_start(event["name"], event["file"])
            else:
                result = Fetched(
                    event["name"], event["file"], event["status"], event["bytes"], event["error"],
                    tuple(needs.names[event["name"]]),
                )
                results.append(result)
                on_done(result)
        exit_code = container.wait().get("StatusCode")
        if len(results) < len(needs.names):
            tail = container.logs(stdout=False, stderr=True, tail=5).decode(errors="replace").strip()
            raise DataError(f"the data container exited {exit_code} before it was done: {tail[-500:]}")
    finally:
        container.remove(force=True)
    return results
