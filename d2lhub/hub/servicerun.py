"""`python -m d2lhub.hub.servicerun RECORDS NAME -- COMMAND...`: how the hub starts its managed services.

JupyterHub keeps no record of its services' processes, so a hub that dies (SIGKILL, the OOM
killer, a crash) would leave its idle culler and lecture-prestart running, and the next start
would add more beside them. This launcher, the service's own process before it becomes the
service, does two things and then execs the command (same pid):
- asks the kernel to send it SIGTERM when its parent, the hub, dies (PR_SET_PDEATHSIG);
- records its pid and start time in RECORDS/NAME.json, so `make up` and `make down` can
  find and stop a service that outlived its hub anyway (d2lhub.ops.services).

Standard library only: it starts with every service.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat); None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def record(records: Path, name: str) -> None:
    records.mkdir(parents=True, exist_ok=True)
    partial = records / f".{name}.json.partial"
    partial.write_text(json.dumps({"pid": os.getpid(), "started": start_time(os.getpid()), "command": sys.argv}))
    partial.replace(records / f"{name}.json")


def main(argv: list[str]) -> None:
    if len(argv) < 4 or argv[2] != "--":
        sys.exit("usage: python -m d2lhub.hub.servicerun RECORDS NAME -- COMMAND...")
    records, name, command = Path(argv[0]), argv[1], argv[3:]
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() == 1:  # the hub died before the request took effect
        sys.exit(f"{name}: the hub is gone; not starting")
    record(records, name)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
