"""Headless Debian Chromium driving a real hub (the integration suite's `hub` fixture) as people do."""

from __future__ import annotations

from pathlib import Path

import pytest
from pages import CHROMIUM, CHROMIUM_ARGS, hub_fixtures, screenshot

docker_client = hub_fixtures.docker_client
hub = hub_fixtures.hub


@pytest.fixture(scope="module")  # Playwright's loop must be gone before other tests use asyncio (tests/browser is no package)
def chromium():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run the tests with `make test`, which installs Debian's chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.call_failed = report.failed
    return report


@pytest.fixture
def page(chromium, request):
    """A fresh browser profile per test (no cookies carried from one person to the next);
    a failing test leaves a screenshot of what the browser showed."""
    context = chromium.new_context(viewport={"width": 1200, "height": 760}, locale="en-US")
    context.set_default_timeout(60_000)
    page = context.new_page()
    yield page
    if getattr(request.node, "call_failed", False):
        screenshot(page, f"FAILED-{request.node.name}")
    context.close()

