"""Book markdown -> MXNet notebooks: the pure steps of the import.

The book is written once for four frameworks; students of this classroom only run MXNet,
so every chapter is filtered down to its MXNet code and prose (d2lbook's own tab
selection), and the Sphinx-only markup (labels, references, citations, toc blocks) is
turned into plain Jupyter markdown that works without the book's HTML build:

    read_toc -> convert_chapter -> collect_labels -> rewrite_references -> collect_images,
    code_files (what the code opens) and gpus_needed (what it runs on)
"""

from __future__ import annotations

import copy
import posixpath
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import nbformat
from d2lbook import markdown as d2l_markdown
from d2lbook import notebook as d2l_notebook
from nbformat.notebooknode import NotebookNode

from d2lhub.course.manifest import CourseError

FRAMEWORK = "mxnet"


DEFAULT_FRAMEWORK = "pytorch"  # what d2l-en assumes for code blocks without a tab line


KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


LANGUAGE_INFO = {"name": "python"}


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
        text = read_text(root / md)
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


def read_text(path: Path) -> str:
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


# A quoted relative path with an extension in code: '../img/catdog.jpg', "./data/notes.txt".
_CODE_PATH_RE = re.compile(r"""(['"])(\.\.?/[^'"\s]+?\.[A-Za-z0-9]{1,8})\1""")
# GPUs a chapter asks for by number: npx.gpu(1), mx.gpu(), num_gpus=2 (d2l.try_gpu falls back to the CPU).
_GPU_INDEX_RE = re.compile(r"\b(?:npx|mx|context)\.gpu\(\s*(\d*)\s*\)")
_NUM_GPUS_RE = re.compile(r"\bnum_gpus\s*=\s*(\d+)")


def code_files(nb: NotebookNode, md_path: str, root: Path) -> tuple[list[str], list[str]]:
    """(book-relative files the code cells open that the book has, the paths it lacks, as written)."""
    found, missing = set(), []
    base = posixpath.dirname(md_path)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for match in _CODE_PATH_RE.finditer(cell.source):
            ref = match.group(2)
            path = posixpath.normpath(posixpath.join(base, ref))
            if not path.startswith("../") and (Path(root) / path).is_file():
                found.add(path)
            elif ref not in missing:
                missing.append(ref)
    return sorted(found), missing


def gpus_needed(nb: NotebookNode) -> int:
    """How many GPUs a chapter's code asks for by number (0: it runs on a CPU)."""
    need = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for match in _GPU_INDEX_RE.finditer(cell.source):
            need = max(need, int(match.group(1) or 0) + 1)
        for match in _NUM_GPUS_RE.finditer(cell.source):
            need = max(need, int(match.group(1)))
    return need
