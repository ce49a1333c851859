"""The students' way out under `network.egress: allowlist`: a forward proxy on the hub's host.

Squid, Debian's package, runs as one of the hub's managed services (d2lhub.hub.traits), listening
only on the address students' servers already reach the hub's API at (the bridge's gateway),
on `hub.port + 82`, and answering only the students' network. It forwards requests for the
host names in `network.allow` and refuses everything else with a page that names the policy.
Students' servers are pointed at it through the usual variables (HTTP_PROXY, HTTPS_PROXY, pip
reads them too), and the packet rules (d2lhub.hub.firewall) refuse any connection that tries
to go around it. Under `none` there is no proxy and nothing leaves; under `open`, no proxy.

Everything here is text made from classroom.yaml and the facts, with no I/O:
d2lhub.hub.facts writes it where squid reads it.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from d2lhub.config import Classroom
from d2lhub.network import Network

SERVICE = "egress-proxy"  # the hub's managed service that runs squid
RUN_ROOT = Path("/run/d2lhub")  # squid reads its files after dropping to its own user: not in state_dir (0700)
DENY_PAGE = "ERR_D2LHUB_EGRESS"  # squid's name for the page a refused request gets
NOTHING = "nothing.invalid"  # the allow-list of an empty `allow` (.invalid names no real host, RFC 2606)
SQUID_TEMPLATES = Path("/usr/share/squid/errors/templates")  # Debian's pages for squid's other errors


def folder(classroom: Classroom) -> Path:
    """Where this hub's proxy files live (world-readable: squid runs as its own user)."""
    return RUN_ROOT / classroom.spawner.instance / "egress"


def proxy_url(address: str, port: int) -> str:
    return f"http://{address}:{port}"


def policy_words(network: Network) -> str:
    return f"blocked by the classroom's egress policy (network.egress: {network.egress}); ask your instructor"


def deny_page(network: Network) -> str:
    """What a refused request gets back (squid fills in %U, the address asked for)."""
    allowed = ", ".join(network.allow) or "none"
    return (
        "<!DOCTYPE html>\n<html><head><title>Blocked by the classroom's egress policy</title></head><body>\n"
        f"<h1>%U is {policy_words(network)}.</h1>\n"
        f"<p>Your server may reach only these hosts: {allowed}.</p>\n"
        "</body></html>\n"
    )


def hosts_file(network: Network) -> str:
    """The names squid resolves itself (network.hosts); every other name goes to DNS."""
    return "".join(f"{address} {name}\n" for name, address in sorted(network.hosts.items()))


def squid_config(network: Network, listen: str, port: int, students: str, where: Path) -> str:
    """squid.conf: listen on `listen:port`, answer only `students` (their network), forward only
    `network.allow` (https only to port 443), keep no cache and no logs of what students fetch.

    A host not listed is refused before squid resolves any name, so a refused request sends
    nothing anywhere (not even a DNS query a student could use to smuggle data out)."""
    allowed = " ".join(network.allow) or NOTHING
    return "\n".join([
        "# Written by d2lhub at each hub start (network.egress: allowlist); edits are overwritten.",
        f"http_port {listen}:{port}",
        f"acl students src {students}",
        f"acl allowed dstdomain -n {allowed}",  # -n: an address asked for is never looked up by name
        "acl https_port port 443",
        "acl CONNECT method CONNECT",
        "http_access deny !students",
        "http_access deny CONNECT !https_port",
        "http_access deny !allowed",  # before anything that resolves a name: no DNS for a refused host
        "http_access deny to_localhost",  # squid's own acl: 127.0.0.0/8, ::1, 0.0.0.0
        "http_access allow allowed",
        "http_access deny all",
        *(f"deny_info {DENY_PAGE} {acl}" for acl in ("https_port", "allowed", "to_localhost", "all")),
        f"error_directory {where / 'errors'}",
        f"hosts_file {where / 'hosts'}",
        "visible_hostname d2lhub-egress",
        "httpd_suppress_version_string on",
        "forwarded_for delete",
        "cache deny all",
        "cache_mem 8 MB",
        "memory_pools off",
        "pid_filename none",
        "netdb_filename none",
        "pinger_enable off",
        "access_log none",
        "cache_log /dev/null",  # squid's own warnings go to the hub's log (-d 1, on stderr)
        "shutdown_lifetime 1 seconds",
        "",
    ])


def files(network: Network, listen: str, port: int, students: str, where: Path) -> dict[str, str]:
    """Every file the proxy reads, by its name under `where` (squid's other error pages are linked
    from Debian's by the writer)."""
    return {
        "squid.conf": squid_config(network, listen, port, students, where),
        "hosts": hosts_file(network),
        f"errors/{DENY_PAGE}": deny_page(network),
    }


def command(squid: str, where: Path) -> list[str]:
    """squid in the foreground (-N), its warnings on stderr (-d 1), under a shell that stops it.

    squid drops root for its own user, and the kernel forgets a process's wish to die with its
    parent when its user changes (the hub's services die with the hub: d2lhub.hub.servicerun).
    The shell keeps that wish, and takes squid with it when it is told to go."""
    squid_command = shlex.join([squid, "-N", "-d", "1", "-f", str(where / "squid.conf")])
    stop = 'kill -TERM "$squid" 2>/dev/null; wait "$squid"; exit 0'
    return ["/bin/sh", "-c", f"{squid_command} & squid=$!; trap '{stop}' TERM INT HUP; wait \"$squid\""]


def student_environment(network: Network, proxy: str, hub_address: str) -> dict[str, str]:
    """What students' servers are told: under allowlist, the proxy (for pip, curl, requests, urllib,
    git) and what never goes through it (the hub's API, the server itself)."""
    env = {"D2LHUB_EGRESS": network.egress}
    if network.egress != "allowlist" or not proxy:  # no proxy: nothing to point at, and nothing leaves
        return env
    direct = ",".join(["localhost", "127.0.0.1", "::1", hub_address])
    for name in ("http_proxy", "https_proxy"):
        env[name] = env[name.upper()] = proxy
    env["no_proxy"] = env["NO_PROXY"] = direct
    env["PIP_RETRIES"] = "1"  # a refused host fails in seconds, not after pip's five tries
    env["PIP_TIMEOUT"] = "20"
    return env
