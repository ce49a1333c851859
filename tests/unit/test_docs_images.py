"""The guides' pictures come from the browser tests (`make screenshots`), never from a hand-made copy:
every image docs/ shows is one a browser test takes, and every docs/img file is shown somewhere."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def taken_by_browser_tests() -> set[str]:
    names = set()
    for test in (REPO / "tests" / "browser").glob("*.py"):
        names.update(re.findall(r"screenshot\(page, \"([\w-]+)\"\)", test.read_text()))
    return names


def shown_in_docs() -> set[str]:
    shown = set()
    for doc in [REPO / "README.md", *(REPO / "docs").glob("*.md")]:
        shown.update(re.findall(r"\(\s*(?:docs/)?img/([\w-]+)\.png\)", doc.read_text()))
    return shown


def test_every_picture_in_the_docs_is_taken_by_a_browser_test():
    assert shown_in_docs() - taken_by_browser_tests() == set()


def test_docs_img_holds_only_pictures_the_docs_show():
    files = {path.stem for path in (REPO / "docs" / "img").glob("*.png")}
    assert files == shown_in_docs()
