"""Import the d2l-en book sources as a course of MXNet notebooks (`d2lhub course build`).

`build_course` orchestrates the steps (d2lhub.course.source, d2lhub.course.convert),
writes into a temporary folder next to the destination and swaps it in at the end, so a
failed import never leaves a half-written course behind.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Optional

import nbformat
from nbformat.notebooknode import NotebookNode

from d2lhub.course.convert import (
    FRAMEWORK,
    Target,
    code_files,
    collect_images,
    collect_labels,
    convert_chapter,
    gpus_needed,
    markdown_title,
    new_notebook,
    read_text,
    read_toc,
    rewrite_references,
    toc_markdown,
)
from d2lhub.course.manifest import (
    MANIFEST_NAME,
    Chapter,
    CourseError,
    CourseManifest,
    Skipped,
)
from d2lhub.course.source import resolve_source

INDEX_NAME = "index.ipynb"


Progress = Callable[[int, int, str], None]


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
    title = markdown_title(read_text(root / "index.md"), "Course")
    entries = read_toc(root)
    total = len(entries)

    # pass 1: convert every chapter, so references can point forward
    texts = {e.source: read_text(root / e.source) for e in entries if e.exists}
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
    files: set[str] = set()
    warnings: list[str] = []
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
            opened, missing = code_files(nb, entry.source, root)
            warnings += [f"{entry.notebook}: its code opens {path}, which is not in the book" for path in missing]
            for kept, found in ((images, collect_images(nb, entry.source, root)), (files, opened)):
                for path in found:
                    if path not in images | files:
                        (dest / path).parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(root / path, dest / path)
                    kept.add(path)
            data = notebook_bytes(nb)
            target = dest / entry.notebook
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            chapters.append(
                Chapter(
                    entry.notebook, titles[entry.source], part_titles[entry.part], hashlib.sha256(data).hexdigest(),
                    gpus_needed(nb),
                )
            )
        if progress is not None:
            progress(done, total, entry.source)

    (dest / INDEX_NAME).write_bytes(notebook_bytes(build_index_notebook(title, chapters)))
    manifest = CourseManifest(
        title=title, chapters=chapters, skipped=skipped, images=sorted(images), files=sorted(files - images),
        warnings=warnings,
    )
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
