"""The `network:` section of classroom.yaml: what students' servers may reach outside the classroom.

`egress` is the policy. `allowlist` (the default) lets students reach only the host names in
`allow`, through a forward proxy on the hub's host (d2lhub.hub.egress) that their servers are
pointed at, while the packet rules (d2lhub.hub.firewall) refuse every other connection out of
the students' bridge; `none` refuses them all and runs no proxy; `open` is the internet, less
`spawner.blocked_networks`. Kept out of d2lhub.config so that module stays the list of the
other sections.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address
from typing import Literal

from pydantic import Field, field_validator

from d2lhub.limits import Strict

LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOST_NAME = re.compile(rf"{LABEL}(?:\.{LABEL})*")
PACKAGE_INDEX = ("pypi.org", "files.pythonhosted.org")  # what `pip install` fetches from


def host_name(value: str, where: str) -> str:
    """A DNS name, lower case (a leading dot is handled by the caller)."""
    name = value.strip().lower()
    if not HOST_NAME.fullmatch(name) or len(name) > 253:
        raise ValueError(f"{where}: {value!r} is not a host name (letters, digits, - and dots, e.g. pypi.org)")
    return name


class Network(Strict):
    egress: Literal["none", "allowlist", "open"] = Field(
        "allowlist",
        description="what students' servers may reach outside: allowlist: only the hosts in `allow`, through a "
        "proxy on the hub's host (every other connection is refused); none: nothing; open: the internet "
        "(less spawner.blocked_networks). allowlist and none need spawner.firewall",
    )
    allow: tuple[str, ...] = Field(
        PACKAGE_INDEX,
        description="under allowlist, the host names students may reach (any port over http, 443 over https); "
        "a leading dot takes the subdomains too (`.example.org`: example.org and www.example.org). The default "
        "is the package index, so pip can fetch packages",
    )
    hosts: dict[str, IPv4Address] = Field(
        {},
        description="names the proxy resolves to these addresses instead of asking DNS, e.g. an internal "
        "package mirror with no DNS name: {mirror.campus: 10.1.2.3}",
    )

    @field_validator("allow")
    @classmethod
    def allow_names(cls, entries: tuple[str, ...]) -> tuple[str, ...]:
        names = []
        for index, entry in enumerate(entries):
            domain = entry.strip().lower().startswith(".")
            name = host_name(entry.strip().lstrip("."), f"entry {index}")
            names.append(f".{name}" if domain else name)
        for name in names:  # the proxy refuses an entry another one already covers
            if names.count(name) > 1:
                raise ValueError(f"{name!r} is listed twice: list each host once")
            covering = next((d for d in names if d.startswith(".") and d != name and f".{name}".endswith(d)), None)
            if covering:
                raise ValueError(f"{name!r} is inside {covering!r} already: list each host once")
        return tuple(names)

    @field_validator("hosts")
    @classmethod
    def hosts_names(cls, hosts: dict[str, IPv4Address]) -> dict[str, IPv4Address]:
        return {host_name(name, f"name {name!r}"): address for name, address in hosts.items()}
