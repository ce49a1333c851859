"""Import the d2l-en book sources as a course of MXNet notebooks.

The book is written once for four frameworks; students of this classroom only
run MXNet, so every chapter is filtered down to its MXNet code and prose and
the Sphinx-only markup (labels, references, citations, toc blocks) is turned
into plain Jupyter markdown that works without the book's HTML build.

The build is a small pipeline of pure functions, in the spirit of nbgrader's
preprocessors:

    resolve_source -> read_toc -> convert_chapter -> collect_labels
    -> rewrite_references -> collect_images -> build_index_notebook

`build_course` only orchestrates them, writes into a temporary folder next to
the destination and swaps it in at the end, so a failed import never leaves a
half-written course behind.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import posixpath
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import nbformat
from d2lbook import markdown as d2l_markdown
from d2lbook import notebook as d2l_notebook
from nbformat.notebooknode import NotebookNode

FRAMEWORK = "mxnet"
DEFAULT_FRAMEWORK = "pytorch"  # what d2l-en assumes for code blocks without a tab line
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz")
MANIFEST_NAME = "course.json"
INDEX_NAME = "index.ipynb"

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
LANGUAGE_INFO = {"name": "python"}

Progress = Callable[[int, int, str], None]

_LABEL_RE = re.compile(r":(?:label|eqlabel):`([^`]+)`")
_REF_RE = re.compile(r":(?:numref|ref):`([^`]+)`")
_EQREF_RE = re.compile(r":eqref:`([^`]+)`")
_CITE_RE = re.compile(r":cite(?:t|p)?:`([^`]+)`")
_WIDTH_LINE_RE = re.compile(r"^[ \t]*:(?:width|height):`[^`]*`[ \t]*\n?", re.MULTILINE)
_TOC_BLOCK_RE = re.compile(r"^(`{3,})[ \t]*toc[ \t]*\n(.*?)^\1[ \t]*$\n?", re.MULTILINE | re.DOTALL)
_FENCE_SPLIT_RE = re.compile(r"(^(`{3,}|~{3,})[^\n]*\n.*?^\2[ \t]*$)", re.MULTILINE | re.DOTALL)
_HEADING_RE = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
_IMAGE_MD_RE = re.compile(r"!\[([^\]]*)\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^)]*[\"'])?\s*\)")
_IMAGE_HTML_RE = re.compile(r"<img\b[^>]*?\bsrc=[\"']([^\"']+)[\"']", re.IGNORECASE)


class CourseError(Exception):
    """The book source cannot be imported; the message names the problem and where."""


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class Chapter:
    path: str  # notebook path relative to the course root, posix
    title: str
    part: str
    sha256: str


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
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CourseError(f"{path}: not a readable course manifest ({exc})") from exc


# --------------------------------------------------------------------------- resolve


def _is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def _looks_like_git_url(source: str) -> bool:
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme in {"git", "ssh", "file", "git+ssh"}:
        return True
    if parsed.scheme in {"http", "https"}:
        return True  # a non-archive web URL can only be a repository
    return bool(re.match(r"^[\w.-]+@[\w.-]+:", source))  # scp-like git@host:org/repo


def _is_bare_repo(path: Path) -> bool:
    return path.is_dir() and (path / "HEAD").is_file() and (path / "objects").is_dir()


def _find_book_root(folder: Path, source: str) -> Path:
    """Release archives wrap the book in one top folder (d2l-en-1.0.3/); look one level down."""
    if (folder / "index.md").is_file():
        return folder
    candidates = sorted(p for p in folder.iterdir() if p.is_dir() and (p / "index.md").is_file())
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        names = ", ".join(p.name for p in candidates)
        raise CourseError(f"{source}: several folders hold an index.md ({names}); point at one")
    raise CourseError(f"{source}: no index.md at the top (nor in a single top folder)")


def _git_clone(url: str, dest: Path) -> Path:
    try:
        result = subprocess.run(
            ["git", "clone", "--quiet", "--depth", "1", url, str(dest)],
            capture_output=True,
            text=True,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
    except FileNotFoundError as exc:
        raise CourseError(f"{url}: cannot clone, git is not installed") from exc
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()
        raise CourseError(f"{url}: git clone failed: {detail[-1] if detail else result.returncode}")
    return dest


def _download(url: str, workdir: Path) -> Path:
    name = posixpath.basename(urllib.parse.urlparse(url).path) or "source"
    dest = workdir / name
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as fh:
            shutil.copyfileobj(response, fh)
    except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
        raise CourseError(f"{url}: download failed ({exc})") from exc
    return dest


def _extract(archive: Path, dest: Path, source: str) -> Path:
    """Refuse members that escape `dest`: an archive is untrusted input."""
    dest.mkdir(parents=True, exist_ok=True)
    name = archive.name.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                root = dest.resolve()
                for member in zf.namelist():
                    target = (dest / member).resolve()
                    if target != root and root not in target.parents:
                        raise CourseError(f"{source}: archive member {member!r} escapes the archive")
                zf.extractall(dest)
        else:
            with tarfile.open(archive, "r:gz") as tf:
                tf.extractall(dest, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise CourseError(f"{source}: not a readable archive ({exc})") from exc
    return dest


def resolve_source(source: str, workdir: Path) -> Path:
    """Turn SOURCE (folder, git URL, archive path or URL) into the folder holding index.md.

    Anything fetched or unpacked goes under `workdir`, which the caller owns and cleans.
    """
    source = str(source).strip()
    if not source:
        raise CourseError("no SOURCE given")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    parsed = urllib.parse.urlparse(source)
    is_url = len(parsed.scheme) > 1 and parsed.scheme != "file" or source.startswith("file://")

    if is_url:
        if parsed.scheme == "file" and _is_archive(parsed.path):
            local = Path(urllib.request.url2pathname(parsed.path))
            return _resolve_local(local, workdir, source)
        if parsed.scheme in {"http", "https"} and _is_archive(parsed.path):
            archive = _download(source, workdir)
            return _find_book_root(_extract(archive, workdir / "unpacked", source), source)
        if _looks_like_git_url(source):
            return _find_book_root(_git_clone(source, workdir / "clone"), source)
        raise CourseError(f"{source}: unsupported URL scheme {parsed.scheme!r}")
    if _looks_like_git_url(source) and not Path(source).exists():
        return _find_book_root(_git_clone(source, workdir / "clone"), source)
    return _resolve_local(Path(source).expanduser(), workdir, source)


def _resolve_local(path: Path, workdir: Path, source: str) -> Path:
    if not path.exists():
        raise CourseError(f"{source}: no such file or folder")
    if path.is_file():
        if not _is_archive(path.name):
            raise CourseError(f"{source}: not a folder or a .zip/.tar.gz/.tgz archive")
        return _find_book_root(_extract(path, workdir / "unpacked", source), source)
    if _is_bare_repo(path) and not (path / "index.md").exists():
        return _find_book_root(_git_clone(str(path.resolve()), workdir / "clone"), source)
    return _find_book_root(path.resolve(), source)


# --------------------------------------------------------------------------- toc


@dataclass(frozen=True)
class TocEntry:
    source: str  # markdown path relative to the book root, posix ("chapter_x/y.md")
    part: str  # source of the top-level toc entry it belongs to (itself for a part)
    exists: bool = True

    @property
    def notebook(self) -> str:
        return self.source[: -len(".md")] + ".ipynb"


def toc_targets(text: str) -> list[str]:
    """Entries of every ```toc block, without the `:maxdepth:`-style option lines."""
    names = []
    for cell in d2l_markdown.split_markdown(text):
        if cell["type"] == "code" and (cell.get("class") or "").strip() == "toc":
            names.extend(_toc_block_names(cell["source"]))
    return names


def _toc_block_names(body: str) -> list[str]:
    names = []
    for line in body.splitlines():
        line = line.strip()
        if line and not line.startswith(":"):
            names.append(line[:-3] if line.endswith(".md") else line)
    return names


def read_toc(root: Path) -> list[TocEntry]:
    """Book order, with each file's part and the toc entries whose file is missing.

    d2lbook's get_toc drops missing entries silently and loops forever on a toc
    cycle; the course should say what it left out, so this walks the tocs itself
    (with d2lbook's own markdown splitter).
    """
    root = Path(root)
    entries: list[TocEntry] = []
    seen: set[str] = {"index.md"}

    def walk(md: str, part: Optional[str]) -> None:
        text = _read_text(root / md)
        base = posixpath.dirname(md)
        for name in toc_targets(text):
            child = posixpath.normpath(posixpath.join(base, name + ".md"))
            if child in seen:
                continue
            seen.add(child)
            child_part = part or child
            if child.startswith("../") or not (root / child).is_file():
                entries.append(TocEntry(child, child_part, exists=False))
                continue
            entries.append(TocEntry(child, child_part))
            walk(child, child_part)

    walk("index.md", None)
    return entries


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CourseError(f"{path}: cannot read ({exc})") from exc


def markdown_title(text: str, fallback: str) -> str:
    """The first `# ` heading outside code blocks: the book's chapter title."""
    for cell in d2l_markdown.split_markdown(text):
        if cell["type"] != "markdown":
            continue
        for line in cell["source"].splitlines():
            match = re.match(r"^#\s+(.+?)\s*$", line)
            if match:
                return match.group(1)
    return fallback


# --------------------------------------------------------------------------- convert

_SENTINEL = "d2lhub_sentinel"


def select_framework(
    nb: NotebookNode, framework: str = FRAMEWORK, default: str = DEFAULT_FRAMEWORK
) -> Optional[NotebookNode]:
    """d2lbook's tab selection, minus its `%%tab all` blind spot.

    get_tab_notebook first asks "does any cell name this tab?" without
    counting `all`, so a chapter whose only code is `%%tab all` would be
    dropped. A throwaway cell tagged with the framework gets it past that check.
    """
    nb = copy.deepcopy(nb)
    tabs = [d2l_notebook.get_cell_tab(cell) for cell in nb.cells]
    if not any(framework in t for t in tabs) and any(t == ["all"] for t in tabs):
        nb.cells.append(nbformat.v4.new_markdown_cell("", metadata={"tab": [framework], _SENTINEL: True}))
    selected = d2l_notebook.get_tab_notebook(nb, tab=framework, default_tab=default)
    if selected is None:
        return None
    selected.cells = [c for c in selected.cells if not c.metadata.get(_SENTINEL)]
    return selected


def convert_chapter(
    text: str, framework: str = FRAMEWORK, default: str = DEFAULT_FRAMEWORK
) -> Optional[NotebookNode]:
    """Markdown chapter -> clean notebook for one framework; None if it has code but none for it."""
    nb = d2l_notebook.read_markdown(text)
    nb = d2l_notebook.split_markdown_cell(nb)
    selected = select_framework(nb, framework, default)
    if selected is None:
        return None
    cells = []
    for cell in selected.cells:
        source = cell.source.strip("\n")
        if cell.cell_type == "code":
            if not source.strip():
                continue
            cells.append(nbformat.v4.new_code_cell(source))
        elif source.strip():
            cells.append(nbformat.v4.new_markdown_cell(source))
    return new_notebook(cells)


def new_notebook(cells: list[NotebookNode]) -> NotebookNode:
    """Same cells in, same bytes out: fixed metadata and ids derived from position."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": dict(LANGUAGE_INFO)}
    for i, cell in enumerate(cells):
        cell.id = f"cell-{i:04d}"
        cell.metadata = {}
        if cell.cell_type == "code":
            cell.execution_count = None
            cell.outputs = []
    nb.cells = cells
    return nb


def _outside_fences(source: str, fn: Callable[[str], str]) -> str:
    """Apply `fn` to markdown text but not to fenced code shown inside it."""
    parts = _FENCE_SPLIT_RE.split(source)
    out = []
    i = 0
    while i < len(parts):
        out.append(fn(parts[i]))
        if i + 1 < len(parts):
            out.append(parts[i + 1])  # the fenced block, untouched
        i += 3  # split yields text, block, fence-marker
    return "".join(out)


# --------------------------------------------------------------------------- labels & references


@dataclass(frozen=True)
class Target:
    notebook: str  # course-relative notebook path
    title: str
    built: bool = True


def collect_labels(nb_path: str, text_cells: list[str], built: bool = True) -> dict[str, Target]:
    """label -> where it lives and what to call it (its heading or figure caption)."""
    labels: dict[str, Target] = {}
    for source in text_cells:
        lines = source.splitlines()
        for i, line in enumerate(lines):
            for label in _LABEL_RE.findall(line):
                labels.setdefault(label, Target(nb_path, _label_title(lines, i, label), built))
    return labels


def _label_title(lines: list[str], index: int, label: str) -> str:
    for prev in reversed(lines[:index]):
        stripped = prev.strip()
        if not stripped or re.fullmatch(r":\w+:`[^`]*`", stripped):
            continue
        heading = _HEADING_RE.match(stripped)
        if heading:
            return heading.group(1)
        image = _IMAGE_MD_RE.match(stripped)
        if image and image.group(1).strip():
            return image.group(1).strip()
        break
    return label


def relative_link(from_nb: str, to_nb: str) -> str:
    if from_nb == to_nb:
        return ""
    return posixpath.relpath(to_nb, posixpath.dirname(from_nb) or ".")


def rewrite_references(
    source: str,
    nb_path: str,
    labels: dict[str, Target],
    toc_links: Callable[[str], str],
) -> str:
    """Sphinx roles -> markdown Jupyter renders: anchors, links, (eq) and [cite] text."""

    def ref(match: re.Match) -> str:
        body = match.group(1).strip()
        explicit = re.fullmatch(r"(.*?)\s*<([^>]+)>", body)
        label = explicit.group(2).strip() if explicit else body
        target = labels.get(label)
        if target is None:
            return f"`{label}`"
        text = target.title
        if explicit and explicit.group(1):
            text = explicit.group(1).replace("%s", target.title) if "%s" in explicit.group(1) else explicit.group(1)
        if not target.built:
            return text
        return f"[{text}]({relative_link(nb_path, target.notebook)}#{label})"

    def cite(match: re.Match) -> str:
        keys = [k.strip() for k in match.group(1).split(",") if k.strip()]
        return "[" + ", ".join(keys) + "]"

    def rewrite(text: str) -> str:
        text = _WIDTH_LINE_RE.sub("", text)
        text = _LABEL_RE.sub(lambda m: f'<a id="{m.group(1)}"></a>', text)
        text = _REF_RE.sub(ref, text)
        text = _EQREF_RE.sub(lambda m: f"({m.group(1).strip()})", text)
        return _CITE_RE.sub(cite, text)

    source = _TOC_BLOCK_RE.sub(lambda m: toc_links(m.group(2)), source)
    return _outside_fences(source, rewrite)


def toc_markdown(nb_path: str, body: str, built: dict[str, str]) -> str:
    """A ```toc block -> bullet list of links to the notebooks that were built."""
    base = posixpath.dirname(nb_path)
    items = []
    for name in _toc_block_names(body):
        target = posixpath.normpath(posixpath.join(base, name + ".ipynb"))
        if target in built:
            items.append(f"- [{built[target]}]({relative_link(nb_path, target)})")
    return "\n".join(items) + "\n" if items else ""


# --------------------------------------------------------------------------- images


def image_references(source: str) -> list[str]:
    refs = [m.group(2) for m in _IMAGE_MD_RE.finditer(source)]
    refs += _IMAGE_HTML_RE.findall(source)
    return refs


def collect_images(nb: NotebookNode, md_path: str, root: Path) -> list[str]:
    """Book-relative paths of the local images a chapter shows, so only those ship."""
    found = set()
    base = posixpath.dirname(md_path)
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for ref in image_references(cell.source):
            if urllib.parse.urlparse(ref).scheme or ref.startswith(("/", "#")):
                continue  # remote, data: or absolute: nothing to copy
            path = posixpath.normpath(posixpath.join(base, urllib.parse.unquote(ref.split("#")[0].split("?")[0])))
            if path.startswith("../"):
                raise CourseError(f"{md_path}: image {ref} points outside the book")
            if not (Path(root) / path).is_file():
                raise CourseError(f"{md_path}: image {ref} not found in the book")
            found.add(path)
    return sorted(found)


# --------------------------------------------------------------------------- index


def build_index_notebook(title: str, chapters: list[Chapter]) -> NotebookNode:
    """The landing notebook: links to every chapter in book order, grouped by part."""
    lines = [f"# {title}", ""]
    current = None
    for chapter in chapters:
        if chapter.part != current:
            current = chapter.part
            lines += ["", f"## {chapter.part}", ""]
        lines.append(f"- [{chapter.title}]({chapter.path})")
    source = "\n".join(lines).replace("\n\n\n", "\n\n").strip() + "\n"
    return new_notebook([nbformat.v4.new_markdown_cell(source)])


def notebook_bytes(nb: NotebookNode) -> bytes:
    nbformat.validate(nb)
    return nbformat.writes(nb).encode("utf-8") + b"\n"


# --------------------------------------------------------------------------- build


def build_course(source: str, out: Path, *, progress: Optional[Progress] = None) -> CourseManifest:
    """Import SOURCE into OUT; OUT is replaced only once the new course is complete."""
    out = Path(out).absolute()
    if out.exists() and not out.is_dir():
        raise CourseError(f"{out}: exists and is not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="d2lhub-source-") as workdir:
        root = resolve_source(source, Path(workdir))
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
        try:
            manifest = _build_into(root, staging, progress)
            # Student containers (their own uids) mount the course read-only: it must be world-readable.
            staging.chmod(0o755)
            _swap_in(staging, out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return manifest


def _build_into(root: Path, dest: Path, progress: Optional[Progress]) -> CourseManifest:
    title = markdown_title(_read_text(root / "index.md"), "Course")
    entries = read_toc(root)
    total = len(entries)

    # pass 1: convert every chapter, so references can point forward
    texts = {e.source: _read_text(root / e.source) for e in entries if e.exists}
    titles = {e.source: markdown_title(texts[e.source], posixpath.basename(e.notebook)[:-6]) for e in entries if e.exists}
    converted: dict[str, NotebookNode] = {}
    skipped: list[Skipped] = []
    labels: dict[str, Target] = {}
    for entry in entries:
        if not entry.exists:
            skipped.append(Skipped(entry.notebook, posixpath.basename(entry.source), "listed in a toc but missing"))
            continue
        try:
            nb = convert_chapter(texts[entry.source])
        except CourseError:
            raise
        except Exception as exc:  # d2lbook asserts on malformed tabs
            raise CourseError(f"{entry.source}: cannot convert ({exc})") from exc
        if nb is None:
            skipped.append(Skipped(entry.notebook, titles[entry.source], f"no {FRAMEWORK} code"))
            cells = [texts[entry.source]]
        else:
            converted[entry.source] = nb
            cells = [c.source for c in nb.cells if c.cell_type == "markdown"]
        for label, target in collect_labels(entry.notebook, cells, built=nb is not None).items():
            labels.setdefault(label, target)

    built_titles = {e.notebook: titles[e.source] for e in entries if e.source in converted}
    part_titles = {e.part: titles.get(e.part, posixpath.basename(e.part)) for e in entries}

    # pass 2: rewrite, copy images, write
    chapters: list[Chapter] = []
    images: set[str] = set()
    for done, entry in enumerate(entries, start=1):
        nb = converted.get(entry.source)
        if nb is not None:
            for cell in nb.cells:
                if cell.cell_type == "markdown":
                    cell.source = rewrite_references(
                        cell.source,
                        entry.notebook,
                        labels,
                        lambda body, nbp=entry.notebook: toc_markdown(nbp, body, built_titles),
                    )
            nb.cells = [c for c in nb.cells if c.source.strip()]
            nb = new_notebook(nb.cells)
            for image in collect_images(nb, entry.source, root):
                if image not in images:
                    (dest / image).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(root / image, dest / image)
                    images.add(image)
            data = notebook_bytes(nb)
            target = dest / entry.notebook
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            chapters.append(
                Chapter(entry.notebook, titles[entry.source], part_titles[entry.part], hashlib.sha256(data).hexdigest())
            )
        if progress is not None:
            progress(done, total, entry.source)

    (dest / INDEX_NAME).write_bytes(notebook_bytes(build_index_notebook(title, chapters)))
    manifest = CourseManifest(title=title, chapters=chapters, skipped=skipped, images=sorted(images))
    manifest.save(dest / MANIFEST_NAME)
    return manifest


def _swap_in(staging: Path, out: Path) -> None:
    """Two renames on one filesystem; the old course comes back if the second fails."""
    if not out.exists():
        os.replace(staging, out)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    retired.rmdir()
    os.replace(out, retired)
    try:
        os.replace(staging, out)
    except OSError:
        os.replace(retired, out)
        raise
    shutil.rmtree(retired, ignore_errors=True)
