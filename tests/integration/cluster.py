"""A Swarm test bed and a classroom hub on it, for test_cluster.py and tests/browser/test_cluster_spawn.py.

This host's engine is the manager; the workers are engines in containers (d2lhub/ops/testbed.py,
what `make cluster` starts), joined with the script `d2lhub nodes add --script` prints, pulling the
images from the hub's own registry. The host engine is shared: the Swarm is made here only if the
engine is in none, under the lock test_swarm.py takes too, and left again; the test bed's nodes,
network, registry and its trust file in /etc/docker/certs.d are removed at the end. Traffic goes
only to the test bed's addresses and loopback.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from harness import ACCOUNTS, REPO, ROLES, RunningHub, free_port_block, remove_labelled, write_classroom

from d2lhub import labels
from d2lhub.course.build import build_course
from d2lhub.hub import firewall
from d2lhub.hub.swarmspawner import pinned_image
from d2lhub.ops import bootstrap, liverestore, nodeguard, registry, testbed
from d2lhub.state import course_dir
from d2lhub.studentimage import built_image, student_image

PASSWORD = "cluster-pass-1"


def d2lhub(path, *args) -> subprocess.CompletedProcess:
    """The admin's command, as they type it."""
    return subprocess.run(
        [sys.executable, "-m", "d2lhub.cli", *args, "--config", str(path)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "250"}, timeout=300,
    )


def swarm_bed(docker_client) -> Iterator[testbed.Testbed]:
    """This engine as the manager of a Swarm on a network of the test bed's own; workers come later."""
    with open("/tmp/d2lhub-swarm-test.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # test_swarm.py inits and leaves the host's Swarm under the same lock
        name = f"d2ltest-{uuid.uuid4().hex[:8]}"
        live_restore = docker_client.info()["LiveRestoreEnabled"]  # the test bed turns it off for its Swarm
        try:
            yield testbed.prepare(docker_client, name)
        finally:
            testbed.down(docker_client, name)
            if live_restore and not docker_client.info()["LiveRestoreEnabled"]:  # the engine as it was found
                liverestore.set_live_restore(docker_client, liverestore.local_dockerd(), True)


def rules_on(node: str, instance: str) -> list[str]:
    listing = testbed.inner(node, "iptables -S DOCKER-USER; iptables -S INPUT").stdout
    return [line for line in listing.splitlines() if f'"d2lhub:{instance}"' in line]  # iptables-nft quotes it


def wait_rules(node: str, classroom, timeout: float = 120) -> list[str]:
    """The node's rules, once the whole set of firewall.node_rules stands there."""
    blocked = tuple(str(n) for n in classroom.spawner.blocked_networks)
    wanted = len(firewall.node_rules(classroom.spawner.instance, "br", "0.0.0.0", 0, blocked))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(found := rules_on(node, classroom.spawner.instance)) == wanted:
            return found
        time.sleep(1)
    raise AssertionError(f"not all packet rules on {node} after {timeout}s: {rules_on(node, classroom.spawner.instance)}")


def running_hub(folder: Path, docker_client, bed: testbed.Testbed, students: list[str], workers: int,
                timings: dict[str, float], profiles: list[dict]) -> Iterator[RunningHub]:
    """A running hub whose classroom is a Swarm over this host and `workers` engines; the last worker is
    labelled with one fake GPU (labels only), which `gpus.reserve_nodes` keeps for GPU profiles."""
    accounts = [{"name": n, "role": ROLES[n], "password": p} for n, p in ACCOUNTS.items()]
    accounts += [{"name": n, "role": "student", "password": PASSWORD} for n in students]
    shared = folder / "state"  # hub.state_dir, shared with every node
    path = write_classroom(
        folder,
        hub={"start_timeout": 300},
        auth={"accounts": accounts},
        spawner={"kind": "swarm", "hub_address": bed.address, "registry": f"{bed.address}:{free_port_block()}",
                 # homes on the node that holds them, reached through each node's engine
                 "homes": "node", "node_engine": bed.node_engine,
                 # the data volume in a folder every node sees at the same path (NFS on real machines)
                 "volume_options": {"type": "none", "o": "bind", "device": str(shared / "volumes" / "{volume}")}},
        # the GPU profile's image: the CPU image under a name of this run (no GPU here, placement is by label)
        images={"student_gpu": {"name": f"d2ltest/standin-gpu-{uuid.uuid4().hex[:8]}",
                                "context": str(REPO / "images/student-gpu")}},
        profiles=profiles,
        gpus={"reserve_nodes": True},
        # the allow-list proxy lives on the hub's host and needs the students' subnet, which a Swarm-scoped
        # network has none of until a task lands: on main, a Swarm hub starts only with egress open
        network={"egress": "open"},
        limits={"cpu": 0.5, "memory": "1G", "home": None},  # no home limit: homes are not on this host's btrfs
    )
    hub = RunningHub(path)
    classroom = hub.classroom
    try:
        started = time.monotonic()
        cpu_image = built_image(classroom, docker_client)
        gpu_image = student_image(classroom, docker_client, "student_gpu")
        docker_client.api.tag(cpu_image, *gpu_image.rsplit(":", 1))
        tags = bootstrap.ensure_all(classroom)  # what `d2lhub up` does: here, start the registry and push
        hub.pushed = {key: pinned_image(docker_client.api.inspect_image(tag), tag, classroom.spawner.registry)
                      for key, tag in tags.items()}
        timings["push the images to the hub's registry"] = time.monotonic() - started

        started = time.monotonic()
        script = d2lhub(path, "nodes", "add", "any", "--script")
        assert script.returncode == 0, script.stderr
        assert f"/etc/docker/certs.d/{classroom.spawner.registry}/ca.crt" in script.stdout
        classroom.hub.state_dir.mkdir(parents=True, exist_ok=True)  # on every node at the same path, as NFS would be
        testbed.add_workers(docker_client, bed, workers, script.stdout, shared=(classroom.hub.state_dir,))
        timings[f"start {workers} engine(s) and join them"] = time.monotonic() - started
        labelled = d2lhub(path, "nodes", "add", bed.workers[-1], "--gpus", "0")  # a fake inventory: labels only
        assert labelled.returncode == 0 and "labelled" in labelled.stdout, labelled.stdout + labelled.stderr
        started = time.monotonic()
        for node in bed.workers:  # the global service ensure_all made runs on each node as it joins
            wait_rules(node, classroom)
        timings["the packet rules on the workers"] = time.monotonic() - started

        build_course(classroom.course.source, course_dir(classroom))
        hub.start()
        hub.guard_image = nodeguard.find(docker_client, classroom.spawner.instance).attrs["Spec"]["TaskTemplate"][
            "ContainerSpec"]["Image"]
        yield hub
    finally:
        hub.stop()
        remove_labelled(docker_client, lambda value: value == classroom.spawner.instance)
        registry.remove(docker_client, classroom)
        stand_in = classroom.images.student_gpu.name
        for repository in (f"{classroom.spawner.registry}/d2lhub/student", f"{classroom.spawner.registry}/{stand_in}",
                           f"{classroom.spawner.registry}/{registry.NODE_IMAGE}", stand_in):
            for image in docker_client.images.list(name=repository):  # tags only: the image stays
                for tag in image.tags:
                    if tag.startswith(repository + ":"):
                        docker_client.images.remove(tag)
        print("\n".join(f"{what}: {seconds:.0f} s" for what, seconds in timings.items()))


def wait_all_ready(browsers, timeout: float) -> None:
    waiting = {b.name: b for b in browsers}
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        for name, browser in list(waiting.items()):
            user = browser.hub_api("GET", f"/users/{name}").json()
            server = (user.get("servers") or {}).get("")
            if server and server.get("ready"):
                del waiting[name]
            elif not user.get("pending") and not server:
                raise AssertionError(f"{name}'s spawn failed")
        time.sleep(1)
    assert not waiting, f"not ready after {timeout}s: {sorted(waiting)}"


def task_node(docker_client, hub, name: str) -> tuple[dict, str]:
    """The student's service spec and the hostname of the node its task runs on."""
    [service] = docker_client.services.list(
        filters={"label": [f"{labels.INSTANCE}={hub.classroom.spawner.instance}", f"{labels.USER}={name}"]})
    [task] = [t for t in service.tasks() if t["Status"]["State"] == "running"]
    node = docker_client.nodes.get(task["NodeID"])
    return service.attrs["Spec"]["TaskTemplate"], node.attrs["Description"]["Hostname"]
