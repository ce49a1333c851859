"""A real hub per test session, on a real Docker engine, named and labelled per run and cleaned up by label."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # harness and hubclient, for tests run from anywhere

from harness import TEST_PREFIX, launched_hub, remove_labelled, unmount_under  # noqa: E402

from d2lhub import engine  # noqa: E402


@pytest.fixture(scope="session")
def docker_client():
    if not engine.engine_answers():
        pytest.fail("no Docker engine answers: run the tests with `make test`, which starts one")
    client = engine.docker_client()
    # Leftovers of a killed run; recent ones may belong to a run still going beside this one.
    remove_labelled(client, lambda instance: instance.startswith(TEST_PREFIX), datetime.now(timezone.utc) - timedelta(hours=3),
                    busy=[])  # a live-restored volume Docker 20.10 miscounts stays until the engine restarts
    return client


@pytest.fixture(scope="session", autouse=True)
def no_mounts_left(tmp_path_factory):
    """Hubs' homes file systems (loop devices) and binds under this run's folders go at the end."""
    yield
    unmount_under(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def hub(tmp_path_factory, docker_client):
    yield from launched_hub(tmp_path_factory.mktemp("classroom"), docker_client)
