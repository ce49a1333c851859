"""What the browser tests share: where Chromium is, where screenshots go, how a person signs in."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _load_hub_fixtures():
    """The integration suite's conftest (real hub, demo class), under a name of its own:
    every conftest module is called `conftest`, so importing it by that name is ambiguous."""
    if "hub_fixtures" not in sys.modules:
        spec = importlib.util.spec_from_file_location("hub_fixtures", REPO / "tests" / "integration" / "conftest.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["hub_fixtures"] = module
        spec.loader.exec_module(module)
    return sys.modules["hub_fixtures"]


hub_fixtures = _load_hub_fixtures()
from harness import ACCOUNTS  # noqa: E402 (on the path once the fixtures are loaded)

# `make screenshots` runs these tests with D2LHUB_SCREENSHOTS=docs/img: the guides' pictures are
# what the browser saw, never made by hand (tests/unit/test_docs_images.py checks the names).
SCREENSHOTS = REPO / os.environ.get("D2LHUB_SCREENSHOTS", "test-output/screenshots")
CHROMIUM = "/usr/bin/chromium"  # Debian's build: `make test` installs it; Playwright never downloads one
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-gpu",
    "--no-first-run",
    "--disable-sync",
]
SPAWN_TIMEOUT_MS = 240_000  # a class starting on 2 busy cores: spawns queue for CPU


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def sign_in(page, hub, name: str, next_path: str = "") -> None:
    """Fill the branded login form by its labels, as a person (or a screen reader) finds the fields."""
    page.goto(f"{hub.url}/hub/login" + (f"?next={next_path}" if next_path else ""))
    page.get_by_label(re.compile("^Username")).fill(name)
    page.get_by_label(re.compile("^Password")).fill(ACCOUNTS[name])
    page.get_by_role("button", name="Sign in").click()
