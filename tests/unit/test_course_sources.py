"""Static checks of the demo course under `course/` (d2l-en markdown format).

Walks the root toc, each part's toc and every chapter the way the importer
does, without needing MXNet or any third-party package.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

COURSE = Path(__file__).resolve().parents[2] / "course"

TOC_RE = re.compile(r"^```toc[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
FENCE_RE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)
LABEL_RE = re.compile(r":label:`([^`]+)`")
NUMREF_RE = re.compile(r":numref:`([^`]+)`")
IMG_RE = re.compile(r"!\[[^\]]*\]\((\.\./img/[^)\s]+)\)")
TITLE_RE = re.compile(r"\A(?:\s*\n)*# \S.*$", re.M)
TAB_RE = re.compile(r"^%%tab [a-z][a-z0-9_, ]*$")


def toc_entries(md_file: Path) -> list[str]:
    """Entries of the first ```toc block: skip `:option:` lines and blanks."""
    match = TOC_RE.search(md_file.read_text(encoding="utf-8"))
    assert match, f"{md_file.relative_to(COURSE)} has no ```toc block"
    entries = []
    for line in match.group(1).splitlines():
        line = line.strip()
        if line and not line.startswith(":"):
            entries.append(line)
    return entries


def parts() -> list[Path]:
    return [COURSE / f"{entry}.md" for entry in toc_entries(COURSE / "index.md")]


def chapters() -> list[Path]:
    found = []
    for part in parts():
        if part.exists():
            found += [part.parent / f"{entry}.md" for entry in toc_entries(part)]
    return found


def existing_chapters() -> list[Path]:
    """Chapters to inspect one by one; missing ones are reported by the toc test."""
    return [c for c in chapters() if c.is_file()]


def rel(path: Path) -> str:
    return str(path.relative_to(COURSE))


def test_course_root_exists():
    assert (COURSE / "index.md").is_file()
    assert TITLE_RE.search((COURSE / "index.md").read_text(encoding="utf-8"))


def test_root_toc_has_maxdepth_first():
    match = TOC_RE.search((COURSE / "index.md").read_text(encoding="utf-8"))
    assert match
    assert match.group(1).splitlines()[0].strip().startswith(":maxdepth:")


def test_every_part_listed_in_root_toc_exists():
    listed = parts()
    assert listed, "root toc lists no parts"
    missing = [rel(p) for p in listed if not p.is_file()]
    assert not missing, f"parts listed in index.md but missing: {missing}"


def test_every_chapter_listed_in_part_tocs_exists():
    listed = chapters()
    assert listed, "part tocs list no chapters"
    missing = [rel(c) for c in listed if not c.is_file()]
    assert not missing, f"chapters listed in a toc but missing: {missing}"


@pytest.mark.parametrize("chapter", existing_chapters(), ids=rel)
def test_chapter_has_title_and_label(chapter: Path):
    text = chapter.read_text(encoding="utf-8")
    assert TITLE_RE.search(text), f"{rel(chapter)}: no `# Title` first line"
    assert LABEL_RE.search(text), f"{rel(chapter)}: no :label:"


@pytest.mark.parametrize("chapter", existing_chapters(), ids=rel)
def test_code_blocks_start_with_tab_line(chapter: Path):
    text = chapter.read_text(encoding="utf-8")
    # Executable cells carry a `{.python .input}`-style info string.
    blocks = [body for info, body in FENCE_RE.findall(text) if info.strip().startswith("{")]
    assert blocks, f"{rel(chapter)}: no code blocks"
    for body in blocks:
        first = body.splitlines()[0] if body.strip() else ""
        assert TAB_RE.match(first), f"{rel(chapter)}: code block starts with {first!r}"


@pytest.mark.parametrize("chapter", existing_chapters(), ids=rel)
def test_chapter_has_mxnet_code(chapter: Path):
    text = chapter.read_text(encoding="utf-8")
    assert "%%tab mxnet" in text, f"{rel(chapter)}: no %%tab mxnet block"


def test_tab_blocks_are_balanced():
    for md in COURSE.rglob("*.md"):
        text = md.read_text(encoding="utf-8")
        begins = len(re.findall(r"^:begin_tab:`[^`]+`\s*$", text, re.M))
        ends = len(re.findall(r"^:end_tab:\s*$", text, re.M))
        assert begins == ends, f"{rel(md)}: {begins} :begin_tab: vs {ends} :end_tab:"


def test_image_references_exist():
    for md in COURSE.rglob("*.md"):
        for ref in IMG_RE.findall(md.read_text(encoding="utf-8")):
            target = (md.parent / ref).resolve()
            assert target.is_file(), f"{rel(md)}: image {ref} not found"


def test_numref_targets_are_defined():
    texts = {md: md.read_text(encoding="utf-8") for md in COURSE.rglob("*.md")}
    labels = [label for text in texts.values() for label in LABEL_RE.findall(text)]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    assert not duplicates, f"labels defined twice: {duplicates}"
    for md, text in texts.items():
        for target in NUMREF_RE.findall(text):
            assert target in labels, f"{rel(md)}: :numref: to undefined label {target}"


def test_every_markdown_file_is_reachable_from_the_toc():
    reachable = {COURSE / "index.md", *parts(), *chapters()}
    stray = [rel(md) for md in COURSE.rglob("*.md") if md not in reachable]
    assert not stray, f"markdown files not listed in any toc: {stray}"
