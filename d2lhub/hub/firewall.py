"""Packet rules around the students' bridge: what a student container may reach.

Docker already stops containers on the bridge from talking to each other (icc off). These
rules add the rest: from the bridge, the host answers only on the hub's API port (not the
proxy API, not anything else listening there), and forwarded traffic to cloud metadata and
private ranges (a campus LAN, other hosts' services) is dropped. With `network.egress:
allowlist` or `none`, every other connection out of the bridge is refused too (at once, so a
student's `pip install` fails fast instead of hanging), and under allowlist the host also answers
on the egress proxy's port (d2lhub.hub.egress), the only way out; with `open` the internet stays
open. Every rule carries a comment naming the hub instance, so it is replaced as a set and
removed with the hub's network.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import threading
from dataclasses import dataclass

_ensuring = threading.Lock()  # spawns run in a thread pool: one check-and-apply at a time


class FirewallError(Exception):
    """iptables is missing or refused a rule; students would not be fenced in."""


@dataclass(frozen=True)
class Rule:
    table_chain: str
    spec: tuple[str, ...]


def bridge_name(network_id: str) -> str:
    """Docker's name for a user-defined bridge's interface."""
    return f"br-{network_id[:12]}"


def tag(instance: str) -> tuple[str, ...]:
    return ("-m", "comment", "--comment", f"d2lhub:{instance}")


REFUSE = ("-j", "REJECT", "--reject-with", "icmp-admin-prohibited")  # the sender learns at once


def rules(
    instance: str, bridge: str, hub_port: int, blocked: tuple[str, ...], apart: bool = False,
    egress: str = "open", proxy_port: int = 0,
) -> list[Rule]:
    """The rules, in the order they must stand at the top of their chains.

    `apart` also drops traffic between containers on the bridge: a Swarm-scoped bridge
    ignores the `enable_icc=false` option that keeps a local bridge's containers apart.
    `egress` (network.egress) other than `open` refuses every connection a container opens
    through the bridge (replies to connections made to it still pass); under `allowlist` the
    host answers on `proxy_port`, the egress proxy, as well as on the hub's API port.
    """
    comment = tag(instance)
    forward = [Rule("DOCKER-USER", ("-i", bridge, "-o", bridge, *comment, "-j", "DROP"))] if apart else []
    forward += [Rule("DOCKER-USER", ("-i", bridge, "-d", cidr, *comment, "-j", "DROP")) for cidr in blocked]
    if egress != "open":
        new = ("-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED")
        forward.append(Rule("DOCKER-USER", ("-i", bridge, *new, *comment, *REFUSE)))
    ports = [hub_port, proxy_port] if egress == "allowlist" else [hub_port]
    host = [
        Rule("INPUT", ("-i", bridge, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", *comment, "-j", "ACCEPT")),
        *(Rule("INPUT", ("-i", bridge, "-p", "tcp", "--dport", str(port), *comment, "-j", "ACCEPT")) for port in ports),
        Rule("INPUT", ("-i", bridge, *comment, "-j", "DROP")),
    ]
    return forward + host


def node_rules(instance: str, bridge: str, hub_address: str, hub_port: int, blocked: tuple[str, ...]) -> list[Rule]:
    """The rules on a Swarm node other than the hub's host (d2lhub.ops.nodeguard keeps them there).

    The same fence as `rules` with `apart`, where the hub is another machine: its API port is
    reached through the bridge (forwarded, not answered by this host), replies to the hub's
    connections pass the private-range drops, and a new connection into the bridge (a published
    port) is let in only from the hub's address. This host answers the bridge nothing.
    """
    comment, hub = tag(instance), f"{hub_address}/32"
    first = [
        Rule("DOCKER-USER", ("-i", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", *comment, "-j", "RETURN")),
        Rule("DOCKER-USER", ("-i", bridge, "-d", hub, "-p", "tcp", "--dport", str(hub_port), *comment, "-j", "RETURN")),
        Rule("DOCKER-USER", ("!", "-s", hub, "-o", bridge, "-m", "conntrack", "--ctstate", "NEW", *comment, "-j", "DROP")),
    ]
    return first + [rule for rule in rules(instance, bridge, hub_port, blocked, apart=True) if "--dport" not in rule.spec]


def iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    binary = shutil.which("iptables")
    if binary is None:
        raise FirewallError("iptables is not installed (Debian: apt-get install iptables)")
    result = subprocess.run([binary, "-w", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise FirewallError(f"iptables {' '.join(args)}: {result.stderr.strip()}")
    return result


def current(instance: str) -> list[Rule]:
    """This instance's rules as they stand now."""
    marker = f"d2lhub:{instance}"
    found = []
    for chain in ("DOCKER-USER", "INPUT"):
        listing = iptables("-S", chain, check=False).stdout
        for line in listing.splitlines():
            if marker in line and line.startswith(f"-A {chain} "):
                found.append(Rule(chain, tuple(shlex.split(line)[2:])))
    return found


def remove(instance: str) -> int:
    stale = current(instance)
    for rule in stale:
        iptables("-D", rule.table_chain, *rule.spec, check=False)
    return len(stale)


def in_place(instance: str, bridge: str, hub_port: int, blocked: tuple[str, ...], apart: bool = False,
             **egress) -> bool:
    """Whether this instance's rules all stand, for this bridge (iptables prints them normalised,
    so rules are matched by chain, bridge and target rather than by their exact text)."""
    def shape(rule: Rule) -> tuple[str, ...]:
        spec = rule.spec
        value = lambda flag: spec[spec.index(flag) + 1] if flag in spec else ""  # noqa: E731
        return rule.table_chain, value("-i"), value("-d"), value("--dport"), spec[-1]

    wanted = rules(instance, bridge, hub_port, blocked, apart, **egress)
    return [shape(r) for r in current(instance)] == [shape(r) for r in wanted]


def ensure(instance: str, bridge: str, hub_port: int, blocked: tuple[str, ...], apart: bool = False,
           **egress) -> bool:
    """Re-apply the rules when some are missing (a restarted engine, a flushed table); True when it did.

    `egress`: network.egress and the proxy's port, as `rules` takes them."""
    with _ensuring:
        if in_place(instance, bridge, hub_port, blocked, apart, **egress):
            return False
        apply(instance, bridge, hub_port, blocked, apart, **egress)
        return True


def apply(instance: str, bridge: str, hub_port: int, blocked: tuple[str, ...], apart: bool = False,
          **egress) -> list[Rule]:
    """Replace this instance's rules with the current set (idempotent, safe across hub restarts)."""
    wanted = rules(instance, bridge, hub_port, blocked, apart, **egress)
    remove(instance)
    for rule in reversed(wanted):  # -I puts each at the top: insert in reverse to keep the order
        iptables("-I", rule.table_chain, *rule.spec)
    return wanted
