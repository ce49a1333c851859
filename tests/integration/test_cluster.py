"""A classroom on a real Swarm of three engines: this host's engine (the manager) and two engines
in containers (d2lhub/ops/testbed.py, what `make cluster` starts), joined with the script
`d2lhub nodes add NODE --script` prints, pulling the student image from the hub's own registry.

The host engine is shared: the Swarm is made here only if the engine is in none, under the same
lock as test_swarm.py, and left again; the test bed's nodes, network, registry and its trust file
in /etc/docker/certs.d are removed at the end. Traffic goes only to the test bed's addresses and
loopback.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
import uuid

import pytest
from harness import (
    ACCOUNTS,
    REPO,
    ROLES,
    RunningHub,
    free_port_block,
    remove_labelled,
    write_classroom,
)
from hubclient import Browser

from d2lhub import labels
from d2lhub.course.build import build_course
from d2lhub.hub.swarmspawner import pinned_image
from d2lhub.ops import bootstrap, registry, testbed
from d2lhub.state import course_dir
from d2lhub.studentimage import built_image, student_image

pytestmark = pytest.mark.integration

CPU_STUDENTS = [f"cluster{i}" for i in range(1, 21)]
GPU_STUDENT = "gpustudent"
PASSWORD = "cluster-pass-1"
TIMINGS: dict[str, float] = {}


def d2lhub(path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "d2lhub.cli", *args, "--config", str(path)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "250"}, timeout=120,
    )


@pytest.fixture(scope="module")
def bed(docker_client):
    with open("/tmp/d2lhub-swarm-test.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # test_swarm.py inits and leaves the host's Swarm under the same lock
        name = f"d2ltest-{uuid.uuid4().hex[:8]}"
        try:
            yield testbed.prepare(docker_client, name)
        finally:
            testbed.down(docker_client, name)


@pytest.fixture(scope="module")
def cluster_hub(tmp_path_factory, docker_client, bed):
    accounts = [{"name": n, "role": ROLES[n], "password": p} for n, p in ACCOUNTS.items()]
    accounts += [{"name": n, "role": "student", "password": PASSWORD} for n in [*CPU_STUDENTS, GPU_STUDENT]]
    folder = tmp_path_factory.mktemp("cluster")
    shared = folder / "state"  # hub.state_dir, shared with every node
    path = write_classroom(
        folder,
        hub={"start_timeout": 300},
        auth={"accounts": accounts},
        spawner={"kind": "swarm", "hub_address": bed.address, "registry": f"{bed.address}:{free_port_block()}",
                 # homes in a folder every node sees at the same path (NFS on real machines)
                 "volume_options": {"type": "none", "o": "bind", "device": str(shared / "homes" / "{volume}")}},
        # the GPU profile's image: the CPU image under a name of this run (no GPU here, placement is by label)
        images={"student_gpu": {"name": f"d2ltest/standin-gpu-{uuid.uuid4().hex[:8]}",
                                "context": str(REPO / "images/student-gpu")}},
        profiles=[{"name": "cpu", "display_name": "CPU"},
                  {"name": "gpu", "display_name": "1 GPU", "image": "student_gpu", "gpus": 1}],
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
        TIMINGS["push the student image to the hub's registry"] = time.monotonic() - started

        started = time.monotonic()
        script = d2lhub(path, "nodes", "add", "any", "--script")
        assert script.returncode == 0, script.stderr
        assert f"/etc/docker/certs.d/{classroom.spawner.registry}/ca.crt" in script.stdout
        classroom.hub.state_dir.mkdir(parents=True, exist_ok=True)  # on every node at the same path, as NFS would be
        testbed.add_workers(docker_client, bed, 2, script.stdout, shared=(classroom.hub.state_dir,))
        TIMINGS["start two engines and join them"] = time.monotonic() - started
        gpu_node = bed.workers[-1]
        labelled = d2lhub(path, "nodes", "add", gpu_node, "--gpus", "0")  # a fake inventory: labels only
        assert labelled.returncode == 0 and "labelled" in labelled.stdout, labelled.stdout + labelled.stderr

        build_course(classroom.course.source, course_dir(classroom))
        hub.start()
        yield hub
    finally:
        hub.stop()
        remove_labelled(docker_client, lambda value: value == classroom.spawner.instance)
        registry.remove(docker_client, classroom)
        stand_in = classroom.images.student_gpu.name
        for repository in (f"{classroom.spawner.registry}/d2lhub/student", f"{classroom.spawner.registry}/{stand_in}", stand_in):
            for image in docker_client.images.list(name=repository):  # tags only: the image stays
                for tag in image.tags:
                    if tag.startswith(repository + ":"):
                        docker_client.images.remove(tag)
        print("\n".join(f"{what}: {seconds:.0f} s" for what, seconds in TIMINGS.items()))


def signed_in(hub, name: str) -> Browser:
    browser = Browser(hub.url)
    assert browser.login(name, PASSWORD).status_code == 302
    return browser


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


def test_students_spread_over_three_engines_pulling_the_hubs_image_by_digest(cluster_hub, docker_client, bed):
    reference = cluster_hub.pushed["student"]
    registry_address = cluster_hub.classroom.spawner.registry
    assert reference.startswith(f"{registry_address}/d2lhub/student@sha256:")
    manager = docker_client.info()["Name"]
    cpu_node, gpu_node = bed.workers

    browsers = [signed_in(cluster_hub, name) for name in CPU_STUDENTS]
    started = time.monotonic()
    for browser in browsers:  # all at once, as a class does
        response = browser.hub_api("POST", f"/users/{browser.name}/server", json={"profile": "cpu"})
        assert response.status_code in (201, 202), response.text
    wait_all_ready(browsers, timeout=400)
    TIMINGS[f"{len(browsers)} students ready over the Swarm (first pulls included)"] = time.monotonic() - started

    placed = {}
    for browser in browsers:
        spec, hostname = task_node(docker_client, cluster_hub, browser.name)
        assert spec["ContainerSpec"]["Image"] == reference  # the exact digest the hub pushed
        assert f"node.labels.{labels.NODE_GPU_FLAG}!=true" in spec["Placement"]["Constraints"]
        placed[browser.name] = hostname
        assert browser.open_server().status_code == 200  # proxied to that node's address and port
    assert set(placed.values()) == {manager, cpu_node}, placed  # spread by the scheduler; the GPU node kept free

    gpu = signed_in(cluster_hub, GPU_STUDENT)
    response = gpu.hub_api("POST", f"/users/{GPU_STUDENT}/server", json={"profile": "gpu"})
    assert response.status_code in (201, 202), response.text
    wait_all_ready([gpu], timeout=300)
    spec, hostname = task_node(docker_client, cluster_hub, GPU_STUDENT)
    assert hostname == gpu_node and "NVIDIA_VISIBLE_DEVICES=0" in spec["ContainerSpec"]["Env"]
    assert spec["ContainerSpec"]["Image"] == cluster_hub.pushed["student_gpu"]
    assert gpu.open_server().status_code == 200

    for node in bed.workers:  # each worker holds the image by the hub's digest, pulled from the hub's registry only
        images = testbed.inner(node, "docker images --digests --format '{{.Repository}}@{{.Digest}}'").stdout.split()
        assert images and set(images) <= set(cluster_hub.pushed.values()), (node, images)
        log = testbed.docker_cli("logs", node)
        assert "docker.io" not in log.stdout + log.stderr  # no other registry was asked
    nodes_list = d2lhub(cluster_hub.path, "nodes", "list")
    assert nodes_list.returncode == 0 and cpu_node in nodes_list.stdout and gpu_node in nodes_list.stdout

    for browser in [*browsers, gpu]:
        browser.stop()
