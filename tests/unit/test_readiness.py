"""The spawner's wait for a new server: noticed within a poll of listening, dead containers fail fast."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from d2lhub.hub.readiness import (
    MAX_CHECK_EVERY,
    MAX_INTERVAL,
    ServerDied,
    stretched,
    wait_until_listening,
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def alive() -> None:
    return None


def test_a_server_that_starts_listening_is_noticed_within_one_poll():
    port = free_port()

    async def scenario():
        async def serve_later():
            await asyncio.sleep(0.6)
            return await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)

        server_task = asyncio.create_task(serve_later())
        waited = await wait_until_listening("127.0.0.1", port, alive, timeout=10, interval=0.05)
        (await server_task).close()
        return waited

    waited = asyncio.run(scenario())
    assert 0.55 <= waited < 0.9  # JupyterHub's backoff would notice it at about 1.4 s


def test_a_container_that_died_fails_fast_with_its_reason():
    async def dead():
        return "the container exited with code 1: ModuleNotFoundError: No module named 'jupyterhub'"

    started = time.monotonic()
    with pytest.raises(ServerDied, match="ModuleNotFoundError"):
        asyncio.run(wait_until_listening("127.0.0.1", free_port(), dead, timeout=60, check_every=0.3))
    assert time.monotonic() - started < 2


def test_nothing_listening_times_out_with_the_address():
    port = free_port()
    with pytest.raises(TimeoutError, match=f"127.0.0.1:{port}"):
        asyncio.run(wait_until_listening("127.0.0.1", port, alive, timeout=0.5, interval=0.05))


def test_the_poll_stretches_when_many_servers_share_the_cores():
    assert stretched(0.1, 1, 2) == 0.1  # a lone spawn is noticed within 0.1 s
    assert stretched(0.1, 10, 2) == 0.5
    assert stretched(0.1, 40, 2) == 2.0  # a class of 40 on 2 cores: 20 polls a second, not 400
    assert stretched(0.1, 400, 2) == MAX_INTERVAL
    assert stretched(1.0, 40, 2, MAX_CHECK_EVERY) == MAX_CHECK_EVERY  # and 4 Docker calls a second, not 40
