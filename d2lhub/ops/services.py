"""The hub's services that outlived their hub: found by the records d2lhub.hub.servicerun
writes, and stopped before a new hub starts and when the hub is stopped."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from d2lhub.config import Classroom
from d2lhub.hub.servicerun import start_time
from d2lhub.state import services_dir


def recorded(classroom: Classroom) -> dict[str, dict]:
    """Service name -> its record (pid, start time, command)."""
    found = {}
    for path in sorted(services_dir(classroom).glob("*.json")):
        try:
            found[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return found


def still_running(entry: dict) -> bool:
    """The recorded process runs still: same pid and the same start time (not a reused pid)."""
    return entry.get("started") is not None and start_time(entry["pid"]) == entry["started"]


def stop_leftovers(classroom: Classroom, wait_seconds: float = 5) -> list[str]:
    """Stop every recorded service process still running; returns their names. Call with no hub running."""
    stopped = []
    for name, entry in recorded(classroom).items():
        if still_running(entry):
            os.kill(entry["pid"], signal.SIGTERM)
            deadline = time.monotonic() + wait_seconds
            while still_running(entry) and time.monotonic() < deadline:
                time.sleep(0.1)
            if still_running(entry):
                os.kill(entry["pid"], signal.SIGKILL)
            stopped.append(name)
        Path(services_dir(classroom) / f"{name}.json").unlink(missing_ok=True)
    return stopped
