"""The hub follows its Docker engine and puts the students' packet rules back the moment it answers again.

With live-restore (d2lhub.ops.liverestore) students' servers run on through an engine restart,
so the rules around their bridge (d2lhub.hub.firewall) must not wait for the next spawn to
come back if the restart, or whatever caused it (a firewall reload, a host upgrade), took them.
A thread of the hub process holds the engine's event stream open: the stream breaks when the
engine stops, and the thread then asks once a second until the engine answers, checks the rules
at once and re-applies any that are missing. The stream is also reopened every `RECHECK`
seconds, so rules flushed while the engine ran are back within that time too.
"""

from __future__ import annotations

import logging
import threading
import time

import docker.errors

from d2lhub.config import Classroom
from d2lhub.engine import docker_client
from d2lhub.hub import firewall
from d2lhub.hub.facts import firewall_inputs

RETRY = 1.0  # seconds between tries while the engine does not answer
RECHECK = 30  # seconds between checks while it does

log = logging.getLogger("JupyterHub")


def restore_rules(client, classroom: Classroom, network_name: str) -> bool:
    """Re-apply this hub's rules if any are missing; True when it did."""
    network = client.networks.get(network_name)
    return firewall.ensure(**firewall_inputs(classroom, network.id))


def watch(classroom: Classroom, network_name: str, stop: threading.Event) -> None:
    """Until `stop` is set: check the rules whenever the engine (re)appears, and every RECHECK seconds."""
    client, down_since = None, None
    while not stop.is_set():
        try:
            client = client or docker_client(timeout=10)
            if restore_rules(client, classroom, network_name):
                log.warning("the firewall rules of %s were missing: re-applied", classroom.spawner.instance)
            if down_since is not None:
                log.info("the Docker engine answers again after %.0f s; firewall rules checked",
                         time.monotonic() - down_since)
                down_since = None
            now = int(time.time())
            for _ in client.events(since=now, until=now + RECHECK, filters={"type": "network", "network": network_name}):
                if stop.is_set():
                    return
        except (firewall.FirewallError, docker.errors.NotFound) as error:  # iptables failed, the network is gone
            log.error("cannot put back the firewall rules of %s: %s", classroom.spawner.instance, error)
            stop.wait(RECHECK)
        except Exception as error:  # the engine went away mid-call (a connection error of any layer)
            if down_since is None:
                down_since = time.monotonic()
                log.warning("the Docker engine does not answer (%s); firewall rules are checked as soon as it does",
                            error.__class__.__name__)
            stop.wait(RETRY)


def start(classroom: Classroom, network_name: str) -> threading.Event | None:
    """Follow the engine in a daemon thread (only when the hub keeps packet rules); set the event to stop."""
    if not classroom.spawner.firewall:
        return None
    stop = threading.Event()
    threading.Thread(target=watch, args=(classroom, network_name, stop), name="engine-watch", daemon=True).start()
    return stop
