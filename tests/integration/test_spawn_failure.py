"""A server that dies while starting fails the spawn at once, with why, instead of hanging until the timeout."""

from __future__ import annotations

import json
import time

import pytest
from harness import launched_hub

pytestmark = pytest.mark.integration
START_TIMEOUT = 240


@pytest.fixture(scope="module")
def starved_hub(tmp_path_factory, docker_client):
    # 24 MB cannot hold a Jupyter server: the kernel's OOM killer stops it while it loads.
    yield from launched_hub(tmp_path_factory.mktemp("starved"), docker_client,
                            limits={"memory": "24M"}, hub={"start_timeout": START_TIMEOUT})


def test_a_server_killed_while_starting_fails_fast_with_the_reason(starved_hub):
    browser = starved_hub.browser("student1")
    started = time.monotonic()
    assert browser.hub_api("POST", "/users/student1/server").status_code in (201, 202)
    events = browser.session.get(browser.url("/hub/api/users/student1/server/progress"), stream=True,
                                 headers={"Accept": "text/event-stream"}, timeout=START_TIMEOUT + 60)
    final = None
    for line in events.iter_lines(decode_unicode=True):
        if line.startswith("data:"):
            event = json.loads(line[5:])
            if event.get("failed") or event.get("ready"):
                final = event
                break
    elapsed = time.monotonic() - started
    assert final and final.get("failed"), final
    assert "could not start" in final["message"] and "out of memory" in final["message"], final["message"]
    assert elapsed < START_TIMEOUT / 2, f"the failure took {elapsed:.0f} s"
    user = browser.hub_api("GET", "/users/student1").json()
    assert not user.get("servers"), user  # nothing left half-started; the student can try again
