"""A student clicks the classroom's link in their LMS course (a platform on `localhost`, so another
site than the hub's 127.0.0.1, as a real LMS is) and Chromium lands in their own JupyterLab on the
notebook the link names, with no sign-in form on the way."""

from __future__ import annotations

import re

import pytest
from harness import launched_hub  # noqa: I001 (on the path once the fixtures are loaded)
from ltiplatform import Platform
from pages import SPAWN_TIMEOUT_MS, hub_fixtures, screenshot
from playwright.sync_api import expect

docker_client = hub_fixtures.docker_client
NOTEBOOK = "d2l/chapter_preliminaries/ndarray.ipynb"


@pytest.fixture(scope="module")
def lms_and_hub(tmp_path_factory, docker_client):
    lms = Platform(host="localhost")
    lms.add_user("sub-ada-01", "ada@uni.example", "Learner")
    hubs = launched_hub(tmp_path_factory.mktemp("lti-browser"), docker_client,
                        auth={"kind": "lti13", "accounts": [], "lti13": lms.settings()})
    hub = next(hubs)
    lms.tool_login_url = f"{hub.url}/hub/lti13/oauth_login"
    lms.tool_launch_url = f"{hub.url}/hub/lti13/oauth_callback"
    lms.tool_jwks_url = f"{hub.url}/hub/lti13/jwks"
    yield lms, hub
    next(hubs, None)
    lms.stop()


def test_a_link_in_the_lms_opens_the_students_notebook(lms_and_hub, page):
    lms, hub = lms_and_hub
    page.goto(f"{lms.url}/course/launch?sub=sub-ada-01&path={NOTEBOOK}")
    page.wait_for_url(re.compile(rf"/user/ada/lab/tree/{re.escape(NOTEBOOK)}"), timeout=SPAWN_TIMEOUT_MS)
    notebook = page.locator(".jp-NotebookPanel:visible")
    expect(notebook.locator(".jp-CodeCell").first).to_be_visible(timeout=SPAWN_TIMEOUT_MS)
    expect(page.get_by_role("tab", name=re.compile("ndarray.ipynb"))).to_be_visible()
    assert page.locator('input[name="password"]').count() == 0
    expect(page.get_by_text(re.compile(r"\(ipykernel\) \| Idle"))).to_be_visible(timeout=120_000)
    screenshot(page, "lti-launch-notebook")
