"""Wait for a just-started student server: answer as soon as it listens, fail as soon as it dies.

JupyterHub's own wait backs off exponentially (0.2 s, 0.4 s, 0.8 s, ... up to 5 s), so a
server ready after 2.1 s is noticed at 3 s; and a container that exited at once is waited on
until `http_timeout`. A TCP connect every `interval` costs the hub next to nothing (the server
binds its port only once its extensions are loaded), and a look at the container every
`check_every` seconds turns a crash into an error carrying its last log lines.

A lone server is looked for every 25 ms: a refused connect costs the hub a fraction of a
millisecond, and a warm spawn takes about a second, so a coarser step would show in it.
When a class starts at once, forty servers share the CPU and each takes a minute or more;
polling all of them forty times a second would cost the hub more than it saves. The interval
therefore stretches with the number of servers waiting per core (40 on 2 cores: every 0.5 s,
80 connects a second in all), and so do the looks at the container (each a Docker API call).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Awaitable, Callable

DeathCheck = Callable[[], Awaitable[str | None]]
MAX_INTERVAL = 2.0  # between connection attempts
MAX_CHECK_EVERY = 10.0  # between looks at the container (a Docker API call each)
_waiting = 0  # servers this hub process is waiting on right now


def stretched(base: float, waiting: int, cores: int, longest: float = MAX_INTERVAL) -> float:
    """`base` for a lone server; longer when many wait for the same cores."""
    return min(longest, max(base, base * waiting / max(cores, 1)))


class ServerDied(RuntimeError):
    """The container stopped before its server answered; the message says why."""


async def listening(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=1)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return True


async def wait_until_listening(
    host: str,
    port: int,
    why_dead: DeathCheck,
    timeout: float,
    interval: float = 0.025,
    check_every: float = 1.0,
) -> float:
    """Seconds until host:port accepts a connection; ServerDied or TimeoutError otherwise."""
    global _waiting
    cores = os.cpu_count() or 1
    started = time.monotonic()
    next_check = started + check_every
    _waiting += 1
    try:
        while True:
            if await listening(host, port):
                return time.monotonic() - started
            now = time.monotonic()
            if now >= next_check:
                reason = await why_dead()
                if reason:
                    raise ServerDied(reason)
                next_check = now + stretched(check_every, _waiting, cores, MAX_CHECK_EVERY)
            if now - started > timeout:
                raise TimeoutError(f"the server did not listen on {host}:{port} within {timeout:.0f} s")
            await asyncio.sleep(stretched(interval, _waiting, cores))
    finally:
        _waiting -= 1
