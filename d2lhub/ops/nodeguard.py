"""The packet rules on every Swarm node that is not the hub's host: a global Swarm service.

The hub's process fences its own host's students' bridge (d2lhub.hub.firewall). Other nodes
get the same fence from a global service, `INSTANCE-node-rules`: Swarm starts one task on every
node, including each node that joins later, and restarts it when it dies. The task runs the
node image (Debian's iptables, pulled from the hub's registry by digest) on the host's network
with NET_ADMIN, and every few seconds checks that each rule of `firewall.node_rules` stands,
putting the whole set back when one is missing (a restarted engine, a flushed table). The
rules outlive the task: a node whose guard stopped keeps its fence.

`d2lhub up` (bootstrap.ensure_all) makes or updates the service; `d2lhub nodes list` shows
each node's guard.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Callable

import docker
import docker.errors
from docker.types import RestartPolicy, ServiceMode

from d2lhub import labels
from d2lhub.config import Classroom
from d2lhub.hub import facts, firewall
from d2lhub.ops import registry

ROLE = "node-rules"
FINGERPRINT = "org.d2lhub.node-rules"  # on the service: a hash of its image and script, to tell a stale one
EVERY_SECONDS = 3


def service_name(instance: str) -> str:
    return f"{instance}-node-rules"


def script(instance: str, wanted: list[firewall.Rule], every: int = EVERY_SECONDS) -> str:
    """The guard's shell loop. It uses the iptables flavour (legacy or nft) whose tables hold the
    node engine's DOCKER-USER chain, so the rules land where the engine's own rules are."""
    def command(verb: str, rule: firewall.Rule) -> str:
        return f'"$IPT" -w {verb} {rule.table_chain} {shlex.join(rule.spec)}'

    # iptables-nft prints the comment quoted, iptables-legacy bare: either, and no other instance's
    marker = shlex.quote(f'--comment "?d2lhub:{re.escape(instance)}"?( |$)')
    standing = " && ".join(command("-C", rule) for rule in wanted)
    inserts = "\n".join(f"    {command('-I', rule)}" for rule in reversed(wanted))
    return f"""pick() {{
  for flavour in iptables-legacy iptables-nft; do
    "$flavour" -w -S DOCKER-USER >/dev/null 2>&1 && {{ echo "$flavour"; return; }}
  done
}}
while :; do
  IPT=$(pick)
  if [ -z "$IPT" ]; then
    echo "no DOCKER-USER chain on $(hostname) yet: is the engine running with its iptables rules?"
  elif ! {{ {standing}; }} 2>/dev/null; then
    for chain in DOCKER-USER INPUT; do
      "$IPT" -w -S "$chain" | grep -E -- {marker} | sed 's/^-A /-D /' | while read -r rule; do eval "\\"\\$IPT\\" -w $rule"; done
    done
{inserts}
    echo "the packet rules of {instance} applied on $(hostname) ($IPT)"
  fi
  sleep {every}
done
"""


def guard_image(client: docker.DockerClient, classroom: Classroom, say: Callable[[str], None]) -> str:
    """The node image as every node runs it: by digest from the hub's registry, or by ID without one."""
    tag = registry.node_image(client, classroom.images.base, say)
    if classroom.spawner.registry:
        return registry.push(client, classroom, tag)
    return client.images.get(tag).id


def find(client: docker.DockerClient, instance: str):
    found = [s for s in client.services.list(filters={"name": service_name(instance)}) if s.name == service_name(instance)]
    return found[0] if found else None


def ensure(client: docker.DockerClient, classroom: Classroom, say: Callable[[str], None] = print) -> str | None:
    """Make the guard service, or remake it when its rules or image changed; its name (None: firewall off)."""
    if classroom.spawner.kind != "swarm" or not classroom.spawner.firewall:
        return None
    instance = classroom.spawner.instance
    network, hub_address = facts.student_network(client, classroom)
    fence = facts.firewall_inputs(classroom, network.id)
    wanted = firewall.node_rules(instance, fence["bridge"], hub_address, fence["hub_port"], fence["blocked"])
    image, text = guard_image(client, classroom, say), script(instance, wanted)
    fingerprint = hashlib.sha256(f"{image}\n{text}".encode()).hexdigest()[:16]
    existing = find(client, instance)
    if existing is not None:
        if (existing.attrs["Spec"].get("Labels") or {}).get(FINGERPRINT) == fingerprint:
            return existing.name
        existing.remove()  # the old rules stay on the nodes until the new task replaces them
    say(f"keeping the students' packet rules on every other node ({service_name(instance)})")
    owned = {labels.INSTANCE: instance, labels.ROLE: ROLE}
    client.services.create(
        image, ["sh", "-c", text], name=service_name(instance), mode=ServiceMode("global"),
        networks=["host"], cap_add=["NET_ADMIN", "NET_RAW"], hostname="{{.Node.Hostname}}",
        constraints=[f"node.id!={client.info()['Swarm']['NodeID']}"],  # the hub's host: the hub's own rules
        restart_policy=RestartPolicy(condition="any", delay=2 * 10**9),
        labels={**owned, FINGERPRINT: fingerprint}, container_labels=owned,
    )
    return service_name(instance)


def guarded_nodes(client: docker.DockerClient, instance: str) -> dict[str, str]:
    """Node ID -> the state of its guard's task ("running" where the rules are kept)."""
    service = find(client, instance)
    if service is None:
        return {}
    states = {}
    for task in service.tasks(filters={"desired-state": "running"}):
        states[task.get("NodeID", "")] = task["Status"]["State"]
    return states
