"""`d2lhub course data`: fetch what the chapters download, once, into one read-only volume.

Which data sets (`scan`): the names in `course.data` plus every kind the built chapters fetch:

    hub         d2l's DATA_HUB names (`d2l.DATA_HUB['n']`, `d2l.download('n')`, `download_extract('n')`);
                a chapter may register its own (`d2l.DATA_HUB['n'] = (d2l.DATA_URL + 'f', 'sha1')`)
    url         direct `d2l.download(URL, folder, SHA1)` calls, URL a literal, `d2l.DATA_URL + 'f'`
                or a constant the chapter defines (`X_URL = 'http://...'`)
    gluon-file  `gluon.utils.download(URL, path=os.path.join(mx.base.data_dir(), ...), sha1_hash=SHA1)`
    gluon-set   Gluon's vision data sets (`gluon.data.vision.MNIST(...)`, `d2l.load_data_fashion_mnist`)
    model       model zoo weights (`vision.resnet18_v1(pretrained=True)`, `get_model('n', pretrained=True)`)

The fetching, listing and planning run in a container of the student image
(d2lhub/image/datafetch.py): d2l's own DATA_HUB and Gluon's own classes say the files and SHA-1s.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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
FROM_MOUNT = "/srv/d2lhub-from"
D2L_DATA_URL = "http://d2l-data.s3-accelerate.amazonaws.com/"  # d2l.DATA_URL: not a mirror
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")

_Q = r"""(['"])([^'"\n]+)\{n}"""
_URL_EXPR = r"""((?:d2l\.DATA_URL|[A-Z_][A-Z0-9_]*)\s*\+\s*['"][^'"\n]+['"]|['"]https?://[^'"\n]+['"]|[A-Z_][A-Z0-9_]*)"""
_SHA1 = r"""['"]([0-9a-fA-F]{40})['"]"""
_DEFINE_RE = re.compile(r"DATA_HUB\[\s*" + _Q.format(n=1) + r"\s*\]\s*=\s*\(\s*" + _URL_EXPR + r"\s*,\s*" + _SHA1)
_USE_RE = re.compile(r"(?:DATA_HUB\[|d2l\.download(?:_extract)?\()\s*" + _Q.format(n=1))
_CONSTANT_RE = re.compile(r"^([A-Z_][A-Z0-9_]*)\s*=\s*" + _URL_EXPR + r"\s*$", re.MULTILINE)
_DIRECT_RE = re.compile(r"d2l\.download\(\s*" + _URL_EXPR + r"\s*,[^)]*?" + _SHA1 + r"\s*\)")
_GLUON_FILE_RE = re.compile(
    r"(?:gluon\.)?utils\.download\(\s*" + _URL_EXPR + r"\s*,\s*(?:path\s*=\s*)?os\.path\.join\(\s*"
    r"(?:mx\.|mxnet\.)?base\.data_dir\(\)\s*,([^)]*)\)\s*,\s*sha1_hash\s*=\s*" + _SHA1
)
_GLUON_RE = re.compile(r"\b(?:gluon\.data\.vision|vision|datasets)\.(" + "|".join(GLUON_SETS) + r")\s*\(")
_D2L_FASHION_RE = re.compile(r"d2l\.(?:FashionMNIST\s*\(|load_data_fashion_mnist\s*\()")
_MODEL_RE = re.compile(
    r"(?:vision\.([a-z][a-z0-9_.]*)\(|get_model\(\s*['\"]([a-z][a-z0-9_.]*)['\"]\s*,)[^)]*pretrained\s*=\s*True"
)


class DataError(Exception):
    """The data sets cannot be fetched as asked; the message names the data set and the problem."""


@dataclass
class DataSet:
    name: str
    kind: str  # hub, url, gluon-file, gluon-set, model (see the module's docstring)
    url: str = ""  # as the book writes it (empty: a DATA_HUB name d2l's own registry resolves)
    sha1: str = ""
    target: str = ""  # where it lies in the data volume
    chapters: list[str] = field(default_factory=list)

    def request(self) -> dict:
        return {"name": self.name, "kind": self.kind, "url": self.url, "sha1": self.sha1, "target": self.target}


@dataclass
class Needs:
    """Data set name -> what it is and which chapters (or `classroom.yaml`) ask for it, in first-asked order."""

    sets: dict[str, DataSet] = field(default_factory=dict)

    @property
    def names(self) -> dict[str, list[str]]:
        return {name: entry.chapters for name, entry in self.sets.items()}

    def want(self, entry: DataSet, where: str) -> None:
        known = self.sets.get(entry.name)
        if known is None:
            known = self.sets[entry.name] = entry
        elif entry.url and (known.url, known.sha1) != (entry.url, entry.sha1):
            if known.url:
                raise DataError(f"{where}: data set {entry.name!r} is defined differently elsewhere ({known.url}, {known.sha1})")
            known.url, known.sha1, known.target = entry.url, entry.sha1, entry.target
        if where not in known.chapters:
            known.chapters.append(where)


def _literal(text: str) -> str:
    return text.strip()[1:-1]


def _url(expr: str, constants: dict[str, str]) -> str | None:
    """A URL expression's value: a literal, d2l.DATA_URL + 'f', CONSTANT or CONSTANT + 'f'."""
    head, plus, tail = (part.strip() for part in expr.partition("+"))
    if not plus:
        return _literal(head) if head[0] in "'\"" else constants.get(head)
    base = D2L_DATA_URL if head == "d2l.DATA_URL" else constants.get(head)
    return base + _literal(tail) if base else None


def _file_entry(name_or_none: str | None, kind: str, url: str, sha1: str, target_dir: str) -> DataSet:
    file = url.rsplit("/", 1)[-1]
    return DataSet(name_or_none or file, kind, url, sha1.lower(), f"{target_dir}/{file}")


def gluon_set(name: str) -> DataSet:
    folder = "fashion-mnist" if name == "FashionMNIST" else name.lower()
    return DataSet(name, "gluon-set", target=f"mxnet/datasets/{folder}")


def scan_code(code: str, where: str, needs: Needs, constants: dict[str, str] | None = None) -> None:
    """Add what one code cell fetches; CONSTANTS are the URL constants the chapter defined so far."""
    constants = {} if constants is None else constants
    for match in _CONSTANT_RE.finditer(code):
        value = _url(match.group(2), constants)
        if value and value.startswith(("http://", "https://")):
            constants[match.group(1)] = value
    for match in _DEFINE_RE.finditer(code):
        url = _url(match.group(3), constants)
        if url:
            needs.want(_file_entry(match.group(2), "hub", url, match.group(4), "d2l"), where)
    for match in _USE_RE.finditer(code):
        if not match.group(2).startswith(("http://", "https://")):
            needs.want(DataSet(match.group(2), "hub"), where)
    for match in _DIRECT_RE.finditer(code):
        url = _url(match.group(1), constants)
        if url:
            needs.want(_file_entry(None, "url", url, match.group(2), "d2l"), where)
    for match in _GLUON_FILE_RE.finditer(code):
        url = _url(match.group(1), constants)
        parts = [_literal(part) for part in match.group(2).split(",") if part.strip()]
        if url and parts:
            folder = "/".join(["mxnet", *parts[:-1]] if "." in parts[-1] else ["mxnet", *parts])
            needs.want(_file_entry(None, "gluon-file", url, match.group(3), folder), where)
    gluon_sets = [match.group(1) for match in _GLUON_RE.finditer(code)]
    gluon_sets += ["FashionMNIST"] if _D2L_FASHION_RE.search(code) else []
    for name in gluon_sets:
        needs.want(gluon_set(name), where)
    for match in _MODEL_RE.finditer(code):
        name = (match.group(1) or match.group(2)).rsplit(".", 1)[-1]
        needs.want(DataSet(name, "model", target="mxnet/models"), where)


_TOP_LEVEL_RE = re.compile(r"^(?:class|def)\s+(\w+)", re.MULTILINE)
_D2L_NAME_RE = re.compile(r"\bd2l\.(\w+)")
_WORD_RE = re.compile(r"\b[A-Za-z_]\w*\b")
_BLOCK_END_RE = re.compile(r"^(?![\s#)\]}]|$)", re.MULTILINE)  # the next statement at the left margin


def library_needs(source: str) -> dict[str, list[DataSet]]:
    """What each class and function of the d2l package fetches (`d2l.TimeMachine` downloads
    timemachine.txt by URL), read from its source the way chapters are: name -> data sets."""
    registry = Needs()
    scan_code(source, "d2l", registry)  # the module's own DATA_HUB entries
    defined = {name: entry for name, entry in registry.sets.items() if entry.url}
    blocks = {}
    for match in _TOP_LEVEL_RE.finditer(source):
        end = _BLOCK_END_RE.search(source, source.find("\n", match.end()) + 1)
        blocks[match.group(1)] = source[match.start(): end.start() if end else len(source)]
    direct: dict[str, list[DataSet]] = {}
    for name, block in blocks.items():
        found = Needs()
        scan_code(block, "d2l", found)
        direct[name] = [defined.get(entry.name, entry) for entry in found.sets.values()]
    words = {name: set(_WORD_RE.findall(block)) & blocks.keys() - {name} for name, block in blocks.items()}
    needs = {name: {entry.name: entry for entry in sets} for name, sets in direct.items()}
    for _ in range(3):  # and what the d2l classes and functions it uses fetch
        for name in blocks:
            for other in words[name]:
                needs[name].update(needs[other])
    return {name: list(sets.values()) for name, sets in needs.items() if sets}


def scan(course: Path, listed: tuple[str, ...] = (), library: dict[str, list[DataSet]] | None = None) -> Needs:
    """What the built course needs, in the order it is first asked for; LIBRARY (from
    `library_needs`) adds what the d2l names a chapter uses fetch."""
    needs = Needs()
    for name in listed:
        needs.want(gluon_set(name) if name in GLUON_SETS else DataSet(name, "hub"), "classroom.yaml")
    for chapter in chapters_of(course):
        nb = nbformat.read(course / chapter, as_version=4)
        constants: dict[str, str] = {}
        for cell in nb.cells:
            if cell.cell_type == "code":
                scan_code(cell.source, chapter, needs, constants)
                for name in _D2L_NAME_RE.findall(cell.source):
                    for entry in (library or {}).get(name, []):
                        needs.want(replace(entry, chapters=[]), chapter)
    return needs


def library_source(classroom: Classroom, client: docker.DockerClient | None = None) -> str:
    """The d2l package's MXNet module as the student image installs it."""
    client = client or engine.docker_client()
    output = client.containers.run(
        built_image(classroom, client), ["sh", "-c", "cat /opt/venv/lib/python3*/site-packages/d2l/mxnet.py"],
        remove=True, **engine.throwaway(classroom.spawner.instance, "data-scan", network="none"),
    )
    return output.decode("utf-8", errors="replace")


def needs_of(classroom: Classroom, course: Path, client: docker.DockerClient | None = None) -> Needs:
    """Everything the course needs: its chapters' own fetches, what the d2l names they use fetch, classroom.yaml's."""
    return scan(course, classroom.course.data, library_needs(library_source(classroom, client)))


@dataclass(frozen=True)
class Fetched:
    name: str
    file: str
    status: str  # cached, fetched, failed
    bytes: int
    error: str = ""
    asked_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class Listed:
    name: str
    kind: str
    target: str
    cached: bool
    bytes: int | None  # known once cached
    asked_by: tuple[str, ...] = ()


def mirror_of(classroom: Classroom) -> str:
    url = classroom.course.data_url
    return "" if url.rstrip("/") == D2L_DATA_URL.rstrip("/") else url.rstrip("/") + "/"


def _run(
    classroom: Classroom,
    needs: Needs,
    mode: str,
    client: docker.DockerClient | None,
    source_dir: Path | None = None,
):
    """Start datafetch.py in a student-image container; yield its JSON events, then remove it."""
    client = client or engine.docker_client()
    image = built_image(classroom, client)
    request = {
        "mode": mode,
        "mirror": mirror_of(classroom),
        "gluon_repo": classroom.course.gluon_repo,
        "source_dir": FROM_MOUNT if source_dir else "",
        "sets": [entry.request() for entry in needs.sets.values()],
    }
    environment = {name: os.environ[name] for name in PROXY_VARIABLES if name in os.environ}
    volume = engine.ensure_data_volume(client, classroom)
    volumes = {
        volume: {"bind": DATA_MOUNT, "mode": "rw" if mode == "fetch" else "ro"},
        str(FETCHER): {"bind": FETCHER_MOUNT, "mode": "ro"},
    }
    if source_dir:
        volumes[str(source_dir)] = {"bind": FROM_MOUNT, "mode": "ro"}
    # root writes the volume (files stay world-readable for the students' uids); online, the host's
    # network reaches a mirror on this machine as well as the data host; from a folder, no network
    network = "host" if mode == "fetch" and not source_dir else "none"
    container = client.containers.run(
        image,
        ["python3", FETCHER_MOUNT, json.dumps(request)],
        name=f"{classroom.spawner.instance}-data-{uuid.uuid4().hex[:8]}",
        environment=environment,
        volumes=volumes,
        detach=True,
        **engine.throwaway(classroom.spawner.instance, "data-fetch", network=network),
    )
    try:
        count = 0
        for event in json_lines(container.logs(stream=True, follow=True, stdout=True, stderr=False)):
            if event["event"] == "unknown":
                raise DataError(
                    "; ".join(
                        f"data set {name!r} (asked for by {', '.join(needs.names[name])}) is neither in d2l's "
                        f"DATA_HUB nor a Gluon data set ({', '.join(GLUON_SETS)}) nor defined by a chapter"
                        for name in event["names"]
                    )
                )
            if event["event"] != "start":
                count += 1
            yield event
        exit_code = container.wait().get("StatusCode")
        if count < len(needs.sets):
            tail = container.logs(stdout=False, stderr=True, tail=5).decode(errors="replace").strip()
            raise DataError(f"the data container exited {exit_code} before it was done: {tail[-500:]}")
    finally:
        container.remove(force=True)


def fetch(
    classroom: Classroom,
    course: Path,
    *,
    source_dir: Path | None = None,
    needs: Needs | None = None,
    on_start: Callable[[str, str], None] = lambda name, file: None,
    on_done: Callable[[Fetched], None] = lambda fetched: None,
    client: docker.DockerClient | None = None,
) -> list[Fetched]:
    """Fetch every needed data set not already in the volume with the right SHA-1 (from SOURCE_DIR: no network)."""
    if source_dir is not None and not Path(source_dir).is_dir():
        raise DataError(f"--from {source_dir}: not a folder")
    needs = needs or needs_of(classroom, course, client)
    if not needs.sets:
        return []
    source = Path(source_dir).resolve() if source_dir is not None else None
    results: list[Fetched] = []
    for event in _run(classroom, needs, "fetch", client, source):
        if event["event"] == "start":
            on_start(event["name"], event["file"])
            continue
        result = Fetched(
            event["name"], event["file"], event["status"], event["bytes"], event["error"],
            tuple(needs.names[event["name"]]),
        )
        results.append(result)
        on_done(result)
    return results


def listing(classroom: Classroom, course: Path, client: docker.DockerClient | None = None) -> list[Listed]:
    """Every data set the course needs: its kind, place in the volume, whether it is cached and its size."""
    needs = needs_of(classroom, course, client)
    if not needs.sets:
        return []
    return [
        Listed(event["name"], needs.sets[event["name"]].kind, event["target"], event["cached"], event["bytes"],
               tuple(needs.names[event["name"]]))
        for event in _run(classroom, needs, "list", client)
    ]


def plan(classroom: Classroom, course: Path, client: docker.DockerClient | None = None) -> dict:
    """The download list for a machine with internet: each data set's files, URL, SHA-1 and
    path in the folder `course data --from` reads."""
    needs = needs_of(classroom, course, client)
    sets = [
        {"name": event["name"], "kind": event["kind"], "chapters": needs.names[event["name"]], "files": event["files"]}
        for event in _run(classroom, needs, "plan", client)
    ] if needs.sets else []
    return {"for": "d2lhub course data --from FOLDER", "layout": "each file at FOLDER/<path>", "data_sets": sets}
