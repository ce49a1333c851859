"""A classroom on a real Swarm of three engines: this host's engine (the manager) and two engines
in containers (tests/integration/cluster.py), the last with a fake GPU. 20 students spread over
the engines, the packet rules on a worker probed from a student's container, `nodes list` and
`status`, and a home moved off a drained node. Traffic goes only to the test bed's addresses.
"""

from __future__ import annotations

import shlex
import socket
import subprocess
import time

import pytest
from cluster import PASSWORD, d2lhub, running_hub, swarm_bed, task_node, wait_all_ready, wait_rules
from hubclient import Browser

from d2lhub import labels, state
from d2lhub.ops import registry, testbed

pytestmark = pytest.mark.integration

CPU_STUDENTS = [f"cluster{i}" for i in range(1, 21)]
GPU_STUDENT = "gpustudent"
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def bed(docker_client):
    yield from swarm_bed(docker_client)


@pytest.fixture(scope="module")
def cluster_hub(tmp_path_factory, docker_client, bed):
    profiles = [{"name": "cpu", "display_name": "CPU"},
                {"name": "gpu", "display_name": "1 GPU", "image": "student_gpu", "gpus": 1}]
    yield from running_hub(tmp_path_factory.mktemp("cluster"), docker_client, bed, [*CPU_STUDENTS, GPU_STUDENT], 2,
                           TIMINGS, profiles)


def signed_in(hub, name: str) -> Browser:
    browser = Browser(hub.url)
    assert browser.login(name, PASSWORD).status_code == 302
    return browser


@pytest.fixture(scope="module")
def running_class(cluster_hub, docker_client, bed):
    """20 CPU students started at once, and the GPU student: hostname of each one's node."""
    browsers = [signed_in(cluster_hub, name) for name in CPU_STUDENTS]
    started = time.monotonic()
    for browser in browsers:  # all at once, as a class does
        response = browser.hub_api("POST", f"/users/{browser.name}/server", json={"profile": "cpu"})
        assert response.status_code in (201, 202), response.text
    wait_all_ready(browsers, timeout=400)
    TIMINGS[f"{len(browsers)} students ready over the Swarm (first pulls included)"] = time.monotonic() - started
    gpu = signed_in(cluster_hub, GPU_STUDENT)
    response = gpu.hub_api("POST", f"/users/{GPU_STUDENT}/server", json={"profile": "gpu"})
    assert response.status_code in (201, 202), response.text
    wait_all_ready([gpu], timeout=300)
    yield {browser.name: browser for browser in [*browsers, gpu]}
    for browser in [*browsers, gpu]:
        browser.stop()


def test_students_spread_over_three_engines_pulling_the_hubs_image_by_digest(cluster_hub, running_class, docker_client, bed):
    reference = cluster_hub.pushed["student"]
    registry_address = cluster_hub.classroom.spawner.registry
    assert reference.startswith(f"{registry_address}/d2lhub/student@sha256:")
    manager = docker_client.info()["Name"]
    cpu_node, gpu_node = bed.workers

    placed = {}
    for name in CPU_STUDENTS:
        spec, hostname = task_node(docker_client, cluster_hub, name)
        assert spec["ContainerSpec"]["Image"] == reference  # the exact digest the hub pushed
        assert f"node.labels.{labels.NODE_GPU_FLAG}!=true" in spec["Placement"]["Constraints"]
        placed[name] = hostname
        assert running_class[name].open_server().status_code == 200  # proxied to that node's address and port
    assert set(placed.values()) == {manager, cpu_node}, placed  # spread by the scheduler; the GPU node kept free

    spec, hostname = task_node(docker_client, cluster_hub, GPU_STUDENT)
    assert hostname == gpu_node and "NVIDIA_VISIBLE_DEVICES=0" in spec["ContainerSpec"]["Env"]
    assert spec["ContainerSpec"]["Image"] == cluster_hub.pushed["student_gpu"]
    assert running_class[GPU_STUDENT].open_server().status_code == 200

    allowed = {*cluster_hub.pushed.values(), cluster_hub.guard_image}
    for node in bed.workers:  # each worker holds the images by the hub's digests, pulled from the hub's registry only
        images = testbed.inner(node, "docker images --digests --format '{{.Repository}}@{{.Digest}}'").stdout.split()
        assert images and set(images) <= allowed, (node, images)
        log = testbed.docker_cli("logs", node)
        assert "docker.io" not in log.stdout + log.stderr  # no other registry was asked


def address_of(node: str, network: str) -> str:
    return testbed.docker_cli("inspect", "-f", f"{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}",
                              node).stdout.strip()


def container_of(node: str, name: str) -> str:
    return testbed.inner(node, f"docker ps -q --filter label={labels.USER}={name}").stdout.strip()


def answers_here(address: str, port: int) -> bool:
    """Whether a TCP port answers this host (the hub's): the probes below aim only at ports that do."""
    try:
        socket.create_connection((address, port), timeout=3).close()
        return True
    except OSError:
        return False


def reaches(node: str, container: str, address: str, port: int) -> str:
    """Connect from inside a student's container: "open" or why not."""
    code = (f"import socket\ntry:\n socket.create_connection(({address!r}, {port}), timeout=2).close(); print('open')\n"
            "except OSError as e: print(type(e).__name__, e)")
    return testbed.inner(node, f"docker exec {container} python3 -c {shlex.quote(code)}").stdout.strip()


def test_a_student_on_a_worker_reaches_only_the_hub(cluster_hub, running_class, docker_client, bed):
    """The node's packet rules (ops/nodeguard.py): from one student's container on a worker, nothing of
    the test bed answers but the hub's API, while the hub still reaches the student's server."""
    cpu_node, gpu_node = bed.workers
    classroom = cluster_hub.classroom
    on_worker = [name for name in CPU_STUDENTS if task_node(docker_client, cluster_hub, name)[1] == cpu_node]
    assert len(on_worker) >= 2, on_worker
    prober, other = on_worker[:2]
    here, neighbour = container_of(cpu_node, prober), container_of(cpu_node, other)
    worker_ip, gpu_ip = address_of(cpu_node, bed.name), address_of(gpu_node, bed.name)
    neighbour_ip = testbed.inner(cpu_node, "docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "
                                 + neighbour).stdout.strip()
    [service] = docker_client.services.list(filters={"label": f"{labels.USER}={other}"})
    [task] = [t for t in service.tasks() if t["Status"]["State"] == "running"]
    published = task["Status"]["PortStatus"]["Ports"][0]["PublishedPort"]
    # a stand-in for an engine API on tcp (2375): a listener in the worker's own network namespace
    testbed.inner(cpu_node, f"docker run -d --name d2ltest-engine-api --network host --entrypoint python3 "
                            f"{cluster_hub.pushed['student']} -m http.server 2375")

    targets = {  # what a student must not reach, each shown to answer where it should
        "the neighbour's server on the same bridge": (neighbour_ip, 8888),
        "the neighbour's published port": (worker_ip, published),
        "the worker's Swarm port": (worker_ip, 7946),
        "the worker's engine API": (worker_ip, 2375),
        "another node of the test bed": (gpu_ip, 7946),
        "the manager's Swarm port": (bed.address, 2377),
        "the hub's registry": tuple(registry.address(classroom)),
    }
    for what, (address, port) in targets.items():
        if address == neighbour_ip:  # the bridge is the worker's own: shown to answer from the worker itself
            assert testbed.inner(cpu_node, f"timeout 3 bash -c '</dev/tcp/{address}/{port}'", check=False).returncode == 0
        else:
            deadline = time.monotonic() + 20  # the stand-in may still be starting
            while not answers_here(address, port) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert answers_here(address, port), f"{what} ({address}:{port}) does not answer the hub's host"
        outcome = reaches(cpu_node, here, address, port)
        assert outcome != "open", f"{prober} reached {what} at {address}:{port}"
    assert reaches(cpu_node, here, bed.address, state.hub_api_port(classroom)) == "open"  # the hub's API
    assert running_class[prober].open_server().status_code == 200  # and the hub reaches the student's server

    # The rules are kept: flushed by hand (or by a restarted engine), they are back within seconds
    testbed.inner(cpu_node, "iptables -F DOCKER-USER")
    assert len(wait_rules(cpu_node, classroom, timeout=30)) > 0
    assert reaches(cpu_node, here, neighbour_ip, 8888) != "open"
    assert running_class[other].open_server().status_code == 200


def table_row(output: str, first_cell: str) -> list[str]:
    """The cells of a `rich` table's row whose first cell is `first_cell`."""
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.replace("┃", "│").strip().strip("│").split("│")]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{output}")


def test_nodes_list_and_status_show_each_nodes_students_gpus_and_free_room(cluster_hub, running_class, docker_client, bed):
    manager = docker_client.info()["Name"]
    cpu_node, gpu_node = bed.workers
    placed = {name: task_node(docker_client, cluster_hub, name)[1] for name in running_class}
    for verb in (("nodes", "list"), ("status",)):
        shown = d2lhub(cluster_hub.path, *verb)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        header = table_row(shown.stdout, "node")
        column = {name: header.index(name) for name in ("GPUs", "GPUs in use", "students", "packet rules", "free: cpu", "free: gpu")}
        for node in (manager, cpu_node, gpu_node):
            row = table_row(shown.stdout, node)
            here = sorted(name for name, where in placed.items() if where == node)
            assert row[column["students"]] == str(len(here)), (node, row, here)
            assert f"on {node}: {', '.join(here)}" in shown.stdout or not here
            assert row[column["packet rules"]] == ("the hub's" if node == manager else "running"), row
        gpu_row = table_row(shown.stdout, gpu_node)
        assert (gpu_row[column["GPUs"]], gpu_row[column["GPUs in use"]], gpu_row[column["free: gpu"]]) == ("0", "0", "0")
        for node in (manager, cpu_node):  # room left for CPU students (0.5 CPU and 1G each, in this classroom)
            resources = next(n for n in docker_client.nodes.list() if n.attrs["Description"]["Hostname"] == node
                             ).attrs["Description"]["Resources"]
            count = sum(where == node for where in placed.values())
            room = min((resources["NanoCPUs"] / 1e9 - 0.5 * count) // 0.5, (resources["MemoryBytes"] - count * 1024**3) // 1024**3)
            row = table_row(shown.stdout, node)
            assert (row[column["GPUs in use"]], row[column["free: cpu"]]) == ("-", str(max(0, int(room)))), row


def test_a_workers_engine_restart_ends_its_servers_and_they_start_again_with_their_files(
        cluster_hub, running_class, docker_client, bed):
    """Swarm mode has no live-restore: an engine restart on a node (an upgrade, a crash) ends the
    servers there. The hub finds each gone at its poll, and each student's next start runs on that
    node again, where their home is, with their files."""
    cpu_node, _ = bed.workers
    on_node = sorted(n for n in CPU_STUDENTS if task_node(docker_client, cluster_hub, n)[1] == cpu_node)
    student = running_class[on_node[0]]
    assert student.open_server().status_code == 200
    student.write_file("before-restart.txt", "kept through the engine restart")
    testbed.docker_cli("restart", cpu_node)  # its dockerd stops (its containers with it) and starts again
    testbed.wait_engine(cpu_node)
    testbed.wait_ready(docker_client, cpu_node)

    def running(name: str) -> bool:
        return bool((student.hub_api("GET", f"/users/{name}").json().get("servers") or {}).get("", {}).get("ready"))

    deadline = time.monotonic() + 90
    while still := [name for name in on_node if running(name)]:
        assert time.monotonic() < deadline, f"the hub still calls these ended servers running: {still}"
        time.sleep(2)
    for name in on_node:
        response = running_class[name].hub_api("POST", f"/users/{name}/server", json={"profile": "cpu"})
        assert response.status_code in (201, 202), response.text
    wait_all_ready([running_class[name] for name in on_node], timeout=240)
    assert {task_node(docker_client, cluster_hub, name)[1] for name in on_node} == {cpu_node}
    assert student.open_server().status_code == 200  # the new server's sign-in, as a browser does
    assert student.read_file("before-restart.txt") == "kept through the engine restart"
    wait_rules(cpu_node, cluster_hub.classroom)  # the node-rules service is back on the restarted engine


def test_a_home_moves_off_a_drained_node_and_its_file_is_there_on_the_next(cluster_hub, running_class, docker_client, bed):
    """spawner.homes: node: homes live on the node that runs the server; `nodes drain` moves them through
    the two engines' APIs, and the student's next server runs where the home went."""
    cpu_node, _ = bed.workers
    manager = docker_client.info()["Name"]
    instance = cluster_hub.classroom.spawner.instance
    on_node = sorted(name for name in CPU_STUDENTS if task_node(docker_client, cluster_hub, name)[1] == cpu_node)
    name = on_node[0]
    student = running_class[name]
    assert student.open_server().status_code == 200
    student.write_file("written-on-a.txt", f"written on {cpu_node}")
    volume = f"{instance}-home-{name}"
    assert volume in testbed.inner(cpu_node, "docker volume ls -q").stdout.split()
    assert volume not in {v.name for v in docker_client.volumes.list()}  # on that node only
    student.stop()

    started = time.monotonic()
    drained = d2lhub(cluster_hub.path, "nodes", "drain", cpu_node, "--yes")
    TIMINGS[f"drain a node, moving {len(on_node)} homes"] = time.monotonic() - started
    assert drained.returncode == 0, drained.stdout + drained.stderr
    for moved in on_node:
        assert f"moved {moved}'s home ({instance}-home-{moved}) from {cpu_node} to {manager}" in drained.stdout
    assert f"{len(on_node)} home(s) moved off {cpu_node}" in drained.stdout
    assert not [v for v in testbed.inner(cpu_node, "docker volume ls -q").stdout.split() if v.startswith(f"{instance}-home-")]

    response = student.hub_api("POST", f"/users/{name}/server", json={"profile": "cpu"})
    assert response.status_code in (201, 202), response.text
    wait_all_ready([student], timeout=120)
    spec, hostname = task_node(docker_client, cluster_hub, name)
    assert hostname == manager and f"node.hostname=={manager}" in spec["Placement"]["Constraints"]
    assert student.open_server().status_code == 200
    assert student.read_file("written-on-a.txt") == f"written on {cpu_node}"
    listing = student.server_api("GET", "/contents/").json()["content"]
    assert "written-on-a.txt" in {item["name"] for item in listing}
    uid = spec["ContainerSpec"]["User"].split(":")[0]
    owners = subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", f"{volume}:/home/jovyan",
                             "--entrypoint", "sh", cluster_hub.pushed["student"], "-c",
                             "find /home/jovyan -printf '%U\\n' | sort -u"], capture_output=True, text=True)
    assert owners.stdout.split() == [uid], owners.stdout + owners.stderr  # every file the student's, as before
