"""The hub's services never outlive it: a hub killed with SIGKILL leaves no idle culler or
lecture-prestart running once `make up` or `make down` has run, and a new hub never runs its
services beside a dead hub's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from harness import launched_hub

from d2lhub.hub.servicerun import start_time
from d2lhub.ops import hubprocess, services

pytestmark = pytest.mark.integration
MANAGED = {"idle-culler", "lecture-prestart", "egress-proxy"}  # the last: squid, network.egress: allowlist


@pytest.fixture()
def hub_with_services(tmp_path, docker_client):
    yield from launched_hub(
        tmp_path / "classroom", docker_client,
        culling={"enabled": True, "timeout": 3600, "every": 300},
        prestart={"schedule": ["0 3 1 1 *"], "timezone": "UTC"},
    )


def running_services(classroom) -> dict[str, int]:
    """Recorded services whose process still runs: name -> pid."""
    return {name: entry["pid"] for name, entry in services.recorded(classroom).items() if services.still_running(entry)}


def wait_for(condition, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def test_a_killed_hub_leaves_no_service_behind(hub_with_services):
    classroom = hub_with_services.classroom
    assert wait_for(lambda: set(running_services(classroom)) == MANAGED), services.recorded(classroom)
    first = services.recorded(classroom)

    os.kill(hubprocess.running_pid(classroom), signal.SIGKILL)
    # the services are told of their hub's death by the kernel, and go
    assert wait_for(lambda: not any(services.still_running(entry) for entry in first.values()))

    hub_with_services.start()  # what `make up` does
    assert wait_for(lambda: set(running_services(classroom)) == MANAGED)
    second = running_services(classroom)
    assert not any(services.still_running(entry) for entry in first.values())
    assert len(second) == len(MANAGED), "one of each service, not one more per crash"

    hub_with_services.stop()  # what `make down` does
    assert not running_services(classroom)
    for pid in second.values():
        assert start_time(pid) is None


def test_down_stops_a_service_that_outlived_its_hub(hub_with_services):
    """A service that survived its hub (here: one the kernel could not tell, started beside it) is
    found by its record and stopped by `make down`."""
    classroom = hub_with_services.classroom
    hub_with_services.stop()
    records = str(classroom.hub.state_dir / "services")
    # a stand-in leftover, recorded the way the hub's launcher records its services
    leftover = subprocess.Popen([sys.executable, "-m", "d2lhub.hub.servicerun", records, "idle-culler", "--", "sleep", "300"])
    try:
        assert wait_for(lambda: running_services(classroom).get("idle-culler") == leftover.pid)
        assert hubprocess.stop(classroom) is False  # no hub ran; the leftover is stopped all the same
        assert leftover.wait(timeout=10) == -signal.SIGTERM
        assert not running_services(classroom)
    finally:
        leftover.kill()
