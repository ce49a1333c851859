"""Students as Swarm services (`spawner.kind: swarm`) on a single-node Swarm, GPU placement by
node label, and the GPU queue (`when_full: queue`) with a fake inventory of one GPU.

The engine is shared: the Swarm is initialised here only if the engine is in none, and left at
the end only then; services, networks and volumes are named and labelled per run. No GPU is
requested from the engine: a GPU profile's service carries NVIDIA_VISIBLE_DEVICES and placement
constraints, which a CPU-only node runs happily once it is labelled.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import REPO, launched_hub

from d2lhub import labels
from d2lhub.hub import firewall
from d2lhub.ops import liverestore

pytestmark = pytest.mark.integration

# `make test` starts dockerd with its log in the checkout's state folder; elsewhere name it here
DOCKERD_LOG = Path(os.environ.get("D2LHUB_DOCKERD_LOG", REPO / ".d2lhub" / "dockerd.log"))
GWBRIDGE = "docker_gwbridge"  # made by `docker swarm init`, left behind by `leave`


@pytest.fixture(scope="module")
def swarm(docker_client):
    """A Swarm manager engine: this engine's Swarm, or a single-node one made for these tests."""
    with open("/tmp/d2lhub-swarm-test.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs of this module must not init/leave under each other
        info = docker_client.info()
        state, live_restore = info["Swarm"], info["LiveRestoreEnabled"]
        made = state["LocalNodeState"] == "inactive"
        had_gwbridge = bool(docker_client.networks.list(names=[GWBRIDGE]))
        if made:
            liverestore.ensure(docker_client, "swarm", say=print)  # as `d2lhub up` does: Docker refuses it in a Swarm
            subprocess.run(["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"], check=True, capture_output=True)
        elif not state.get("ControlAvailable"):
            pytest.skip("this engine is a Swarm worker, not a manager")
        node = docker_client.nodes.list(filters={"role": "manager"})[0]
        labels_before = dict(node.attrs["Spec"].get("Labels") or {})
        try:
            yield node.attrs["Description"]["Hostname"]
        finally:
            if made:
                subprocess.run(["docker", "swarm", "leave", "--force"], check=True, capture_output=True)
                if not had_gwbridge:
                    subprocess.run(["docker", "network", "rm", GWBRIDGE], capture_output=True)
                if live_restore and not docker_client.info()["LiveRestoreEnabled"]:  # the engine as it was found
                    liverestore.set_live_restore(docker_client, liverestore.local_dockerd(), True)
            else:
                node.reload()
                spec = dict(node.attrs["Spec"], Labels=labels_before)
                node.update(spec)


@pytest.fixture(scope="module")
def swarm_hub(tmp_path_factory, docker_client, swarm):
    log_start = DOCKERD_LOG.stat().st_size if DOCKERD_LOG.exists() else None
    yield from launched_hub(
        tmp_path_factory.mktemp("swarm"),
        docker_client,
        hub={"start_timeout": 60},
        spawner={"kind": "swarm"},
        limits={"home": None},  # homes of a Swarm are not on this host's btrfs: no home limit
        images={"student_gpu": {"name": "d2lhub/student-gpu", "context": str(REPO / "images/student-gpu")}},
        profiles=[
            {"name": "cpu", "display_name": "CPU"},
            {"name": "gpu", "display_name": "1 GPU", "image": "student_gpu", "gpus": 1},
        ],
        gpus={"devices": {swarm: ["0"]}, "when_full": "queue", "queue_timeout": 12},
    )
    if log_start is not None:  # no node ever asked a registry for an image
        with DOCKERD_LOG.open() as log:
            log.seek(log_start)
            pulls = [line for line in log if "pull" in line.lower() and ("d2lhub" in line or "sha256:" in line)]
        assert not pulls, pulls


def services_of(docker_client, hub, name):
    instance = hub.classroom.spawner.instance
    return docker_client.services.list(filters={"label": [f"{labels.INSTANCE}={instance}", f"org.d2lhub.user={name}"]})


def request_server(browser, profile: str) -> None:
    response = browser.hub_api("POST", f"/users/{browser.name}/server", json={"profile": profile})
    assert response.status_code in (201, 202), response.text


def wait_ready(browser, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server = (browser.hub_api("GET", f"/users/{browser.name}").json().get("servers") or {}).get("")
        if server and server.get("ready"):
            return server
        time.sleep(0.5)
    raise AssertionError(f"{browser.name}'s server was not ready after {timeout}s")


def progress_until(browser, wanted: str, timeout: float = 60) -> list[str]:
    """The spawn page's event messages, read until one contains `wanted` (or the spawn ends)."""
    messages = []
    response = browser.hub_api("GET", f"/users/{browser.name}/server/progress", stream=True)
    deadline = time.monotonic() + timeout
    for line in response.iter_lines(decode_unicode=True):
        if line and line.startswith("data:"):
            event = json.loads(line[5:])
            messages.append(event.get("message", ""))
            if wanted in messages[-1] or event.get("failed") or event.get("ready"):
                break
        if time.monotonic() > deadline:
            break
    response.close()
    return messages


def d2lhub(hub, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "d2lhub.cli", *args, "--config", str(hub.path)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "250"}, timeout=120,
    )


def test_student_runs_as_a_service_keeps_files_and_stop_removes_it(swarm_hub, docker_client):
    student = swarm_hub.browser("student1")
    request_server(student, "cpu")
    wait_ready(student)
    [service] = services_of(docker_client, swarm_hub, "student1")
    spec = service.attrs["Spec"]["TaskTemplate"]
    container = spec["ContainerSpec"]
    uid = int(container["User"].split(":")[0])
    assert container["User"] == f"{uid}:100" and uid > swarm_hub.classroom.spawner.uid_base
    assert container["Image"].startswith("sha256:")  # by ID: no registry is ever asked
    assert container["CapabilityDrop"] == ["ALL"]
    limits = spec["Resources"]["Limits"]
    assert (limits["MemoryBytes"], limits["NanoCPUs"], limits["Pids"]) == (2 * 1024**3, 10**9, 1024)
    home = [m for m in container["Mounts"] if m["Target"] == "/home/jovyan"]
    assert home[0]["Source"] == f"{swarm_hub.classroom.spawner.instance}-home-student1" and home[0]["Type"] == "volume"
    assert service.attrs["Endpoint"]["Spec"]["Ports"][0]["PublishMode"] == "host"

    assert student.open_server().status_code == 200  # through the proxy, to the task's published port
    network = docker_client.networks.get(labels.swarm_network(swarm_hub.classroom.spawner.instance))
    bridge = firewall.bridge_name(network.id)
    rules = subprocess.run(["iptables", "-S", "DOCKER-USER"], capture_output=True, text=True, check=True).stdout
    assert f"-i {bridge} -o {bridge}" in rules  # the Swarm bridge's containers are kept apart by rule
    status = d2lhub(swarm_hub, "status")
    assert status.returncode == 0 and f"{service.name}@" in status.stdout, status.stdout + status.stderr
    student.write_file("swarm-note.txt", "kept across a stop")
    student.stop()
    assert services_of(docker_client, swarm_hub, "student1") == []
    request_server(student, "cpu")
    wait_ready(student)
    assert student.open_server().status_code == 200
    assert student.read_file("swarm-note.txt") == "kept across a stop"
    student.stop()


def test_gpu_profile_waits_for_a_labelled_node_then_queues_the_next_student(swarm_hub, docker_client, swarm):
    first = swarm_hub.browser("student2")
    request_server(first, "gpu")
    messages = progress_until(first, "Waiting for a node")
    assert "Assigned GPU 0 on " + swarm in messages
    assert any("no suitable node" in m and "org.d2lhub.gpu=true" in m for m in messages), messages
    [service] = services_of(docker_client, swarm_hub, "student2")
    spec = service.attrs["Spec"]["TaskTemplate"]
    assert set(spec["Placement"]["Constraints"]) == {
        f"node.labels.{labels.NODE_GPU_FLAG}==true", f"node.hostname=={swarm}"}
    assert "NVIDIA_VISIBLE_DEVICES=0" in spec["ContainerSpec"]["Env"]
    assert "DeviceRequests" not in json.dumps(spec)  # nothing asks this GPU-less engine for a GPU

    added = d2lhub(swarm_hub, "nodes", "add", swarm, "--gpus", "0")
    assert added.returncode == 0 and "labelled" in added.stdout, added.stdout + added.stderr
    wait_ready(first)  # the label made the node eligible; the pending task is placed and runs
    listed = d2lhub(swarm_hub, "nodes", "list")
    assert listed.returncode == 0 and "capacity" in listed.stdout, listed.stderr
    refused = d2lhub(swarm_hub, "nodes", "drain", swarm)
    assert refused.returncode != 0 and "student2" in refused.stdout + refused.stderr

    # The one GPU is taken: the next student waits in the queue, told their place, until it times out...
    second = swarm_hub.browser("teacher")
    request_server(second, "gpu")
    messages = progress_until(second, "No GPU became free", timeout=40)
    assert "Waiting for a GPU: you are next" in messages
    assert any("No GPU became free within 12 s" in m for m in messages), messages
    assert services_of(docker_client, swarm_hub, "teacher") == []

    # ...or gets the GPU as soon as it frees.
    request_server(second, "gpu")
    assert "Waiting for a GPU: you are next" in progress_until(second, "Waiting for a GPU")
    first.stop()
    wait_ready(second)
    [service] = services_of(docker_client, swarm_hub, "teacher")
    assert "NVIDIA_VISIBLE_DEVICES=0" in service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"]
    second.stop()
