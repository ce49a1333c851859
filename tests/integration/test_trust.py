"""Trust, tried for real: students kept apart, abuse contained, faults survived.

Probes go only to the project's own containers and to 127.0.0.0/8; egress to cloud metadata and
other outside addresses is shown blocked by reading the rules, never by sending traffic there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import requests
from harness import launched_hub, roster_student

from d2lhub.grading import layout
from d2lhub.hub import enginewatch, firewall
from d2lhub.hub.facts import firewall_inputs
from d2lhub.state import hub_api_port

pytestmark = pytest.mark.integration

CONNECT = """
import socket, json
def reach(host, port):
    try:
        socket.create_connection((host, port), timeout=3).close()
        return "open"
    except OSError as error:
        return type(error).__name__
print(json.dumps({name: reach(host, port) for name, (host, port) in %s.items()}))
"""


@pytest.fixture(scope="module")
def trust_hub(tmp_path_factory, docker_client):
    yield from launched_hub(tmp_path_factory.mktemp("trust"), docker_client)


@pytest.fixture(scope="module")
def pair(trust_hub):
    students = {name: trust_hub.browser(name) for name in ("student1", "student2")}
    for browser in students.values():
        browser.spawn()
        assert browser.open_server().status_code == 200
    return students


def container(docker_client, hub, name):
    return docker_client.containers.get(f"{hub.classroom.spawner.instance}-{name}")


def ip_of(docker_client, hub, name) -> str:
    networks = container(docker_client, hub, name).attrs["NetworkSettings"]["Networks"]
    return networks[hub.classroom.spawner.instance]["IPAddress"]


def test_firewall_rules_fence_the_bridge(trust_hub, docker_client):
    network = docker_client.networks.get(trust_hub.classroom.spawner.instance)
    bridge = firewall.bridge_name(network.id)
    forward = subprocess.run(["iptables", "-S", "DOCKER-USER"], capture_output=True, text=True, check=True).stdout
    dropped = {
        line.split("-d ")[1].split()[0]
        for line in forward.splitlines()
        if f"-i {bridge}" in line and line.endswith("-j DROP")
    }
    assert "169.254.0.0/16" in dropped  # cloud metadata
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"} <= dropped
    host = subprocess.run(["iptables", "-S", "INPUT"], capture_output=True, text=True, check=True).stdout
    ours = [line for line in host.splitlines() if f"-i {bridge}" in line]
    assert f"--dport {hub_api_port(trust_hub.classroom)}" in ours[1] and ours[1].endswith("-j ACCEPT")
    assert ours[-1].endswith("-j DROP")
    assert network.attrs["Options"]["com.docker.network.bridge.enable_icc"] == "false"


def test_rules_flushed_under_a_running_hub_come_back_without_a_spawn(trust_hub, docker_client):
    """The hub's engine watch (d2lhub.hub.enginewatch) checks the rules every 30 s, not only when a restarted
    engine answers again (test_engine_restart.py) or a student spawns."""
    rules = firewall_inputs(trust_hub.classroom, docker_client.networks.get(trust_hub.classroom.spawner.instance).id)
    log = trust_hub.classroom.hub.state_dir / "jupyterhub.log"
    said = f"the firewall rules of {rules['instance']} were missing: re-applied"
    before = log.read_text().count(said)
    assert firewall.in_place(**rules)
    firewall.remove(rules["instance"])  # as `iptables -F` or a host firewall's reload would
    try:
        deadline = time.monotonic() + enginewatch.RECHECK + 10
        while not firewall.in_place(**rules) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert firewall.in_place(**rules), firewall.current(rules["instance"])
        assert log.read_text().count(said) == before + 1
    finally:
        if not firewall.in_place(**rules):
            firewall.apply(**rules)  # the module's other tests need them


def test_student_reaches_the_hub_api_but_no_neighbour_or_proxy_api(trust_hub, pair, docker_client):
    network = docker_client.networks.get(trust_hub.classroom.spawner.instance)
    gateway = network.attrs["IPAM"]["Config"][0]["Gateway"]
    targets = {
        "hub_api": (gateway, hub_api_port(trust_hub.classroom)),
        "proxy_api": (gateway, trust_hub.classroom.hub.port + 1),
        "public_proxy": (gateway, trust_hub.classroom.hub.port),
        "neighbour": (ip_of(docker_client, trust_hub, "student2"), 8888),
    }
    result = pair["student1"].execute(CONNECT % repr(targets))
    assert result.error is None, result.error
    reached = json.loads(result.stdout)
    assert reached["hub_api"] == "open"
    assert reached["proxy_api"] != "open"
    assert reached["public_proxy"] != "open"
    assert reached["neighbour"] != "open"


def test_container_hardening(trust_hub, pair, docker_client):
    attrs = container(docker_client, trust_hub, "student1").attrs
    assert "no-new-privileges" in attrs["HostConfig"]["SecurityOpt"]
    assert attrs["HostConfig"]["CapDrop"] == ["ALL"]
    assert attrs["HostConfig"]["PidsLimit"] == trust_hub.classroom.limits.pids
    assert not attrs["HostConfig"]["Privileged"]
    sources = {m.get("Source") or "" for m in attrs["Mounts"]}
    state = trust_hub.classroom.hub.state_dir
    assert str(state) not in sources  # the hub database, secrets and accounts stay on the host
    assert not any(source.endswith((".sqlite", "_secret", "_token", "accounts.json")) for source in sources)
    assert str(layout.course_root(trust_hub.classroom)) not in sources  # the gradebook too
    status = pair["student1"].execute("print(open('/proc/self/status').read())").stdout
    assert "NoNewPrivs:\t1" in status
    assert "CapEff:\t0000000000000000" in status


def test_own_token_cannot_open_another_students_server(trust_hub, pair):
    token = pair["student1"].execute("import os; print(os.environ['JUPYTERHUB_API_TOKEN'])").stdout.strip()
    headers = {"Authorization": f"token {token}"}
    other = requests.get(f"{trust_hub.url}/user/student2/api/contents", headers=headers, timeout=30)
    assert other.status_code == 403
    own = requests.get(f"{trust_hub.url}/user/student1/api/contents", headers=headers, timeout=30)
    assert own.status_code == 200


def test_image_outside_allowed_images_is_refused(trust_hub, docker_client):
    browser = trust_hub.browser("boss")  # (the hub keeps these options for boss's next spawn)
    response = browser.hub_api("POST", "/users/boss/server", json={"image": "debian:bookworm-slim"})
    deadline = time.monotonic() + 60
    while response.status_code in (201, 202) and time.monotonic() < deadline:
        if not browser.hub_api("GET", "/users/boss").json().get("pending"):
            break
        time.sleep(0.5)
    names = [c.name for c in docker_client.containers.list(all=True)]
    assert f"{trust_hub.classroom.spawner.instance}-boss" not in names
    assert not browser.hub_api("GET", "/users/boss").json()["servers"]


def test_fork_bomb_and_memory_hog_stay_in_their_container(trust_hub, pair, docker_client):
    """The abuser (its own server may suffer) never slows the hub or a neighbour's kernel."""
    abuser, neighbour = trust_hub.browser("teacher"), pair["student2"]
    abuser.spawn()
    abuser.open_server()
    fork_bomb = (
        "import subprocess\n"
        "subprocess.Popen(['bash', '-c', 'f(){ f | f & }; f'], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print('started')"
    )
    memory_hog = "blocks = []\nwhile True:\n    blocks.append(bytearray(256 * 2**20))"
    assert abuser.execute(fork_bomb).stdout.strip() == "started"
    abused = container(docker_client, trust_hub, "teacher")
    cap, deadline, pids = trust_hub.classroom.limits.pids, time.monotonic() + 60, 0
    while pids < cap * 0.95 and time.monotonic() < deadline:
        pids = abused.stats(stream=False)["pids_stats"]["current"]
    assert cap * 0.95 <= pids <= cap  # the bomb fills its own process budget and no more
    started = time.monotonic()
    assert neighbour.execute("print(sum(range(10**6)))").stdout.strip() == str(sum(range(10**6)))
    assert time.monotonic() - started < 30
    assert requests.get(f"{trust_hub.url}/hub/health", timeout=10).status_code == 200
    abused.kill()  # the admin's remedy; the hub notices and the student can start again
    abuser.session.cookies.clear()
    abuser = trust_hub.browser("teacher")
    deadline = time.monotonic() + 90
    while abuser.hub_api("GET", "/users/teacher").json()["servers"] and time.monotonic() < deadline:
        time.sleep(1)
    abuser.spawn()
    abuser.open_server()
    hog = abuser.execute(memory_hog, timeout=120)
    assert hog.error is not None or hog.stdout == ""  # the kernel dies at the memory limit
    assert neighbour.execute("print('still here')").stdout.strip() == "still here"
    assert requests.get(f"{trust_hub.url}/hub/health", timeout=10).status_code == 200
    abuser.stop()


def test_hub_sigkill_keeps_servers_and_makes_no_duplicates(trust_hub, pair, docker_client):
    before = container(docker_client, trust_hub, "student1").id
    os.kill(int((trust_hub.classroom.hub.state_dir / "jupyterhub.pid").read_text()), signal.SIGKILL)
    time.sleep(1)
    trust_hub.start()
    assert pair["student1"].open_server().status_code == 200
    instance = trust_hub.classroom.spawner.instance
    mine = [c for c in docker_client.containers.list() if c.name == f"{instance}-student1"]
    assert [c.id for c in mine] == [before]


def test_killed_proxy_comes_back_with_routes(trust_hub, pair):
    proxy_pid = int((trust_hub.classroom.hub.state_dir / "proxy.pid").read_text())
    os.kill(proxy_pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if pair["student2"].open_server().status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(1)
    assert pair["student2"].open_server().status_code == 200
    assert int((trust_hub.classroom.hub.state_dir / "proxy.pid").read_text()) != proxy_pid


def test_killed_student_container_is_noticed_and_restarts_with_files(trust_hub, pair, docker_client):
    student = pair["student2"]
    student.write_file("keep.txt", "written before the crash")
    container(docker_client, trust_hub, "student2").kill()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and student.hub_api("GET", "/users/student2").json()["servers"]:
        time.sleep(1)
    assert not student.hub_api("GET", "/users/student2").json()["servers"], "the hub did not notice"
    student.spawn()
    assert student.open_server().status_code == 200
    assert student.read_file("keep.txt") == "written before the crash"


@pytest.fixture
def small_home(trust_hub, tmp_path):
    """A student, `filler`, whose home has the test hub's limit (limits.home: 64M, a btrfs qgroup)."""
    browser = roster_student(trust_hub, tmp_path, "filler")
    yield browser
    browser.stop()


FILL_HOME = """
import os
written = 0
try:
    with open(os.path.expanduser("~/filler.bin"), "wb") as out:
        while True:
            out.write(b"x" * 2**20)
            written += 1
except OSError as error:
    print(error.errno, written)
"""


def test_student_filling_their_home_harms_no_one_else(trust_hub, pair, small_home):
    """Their own disk is full (their server may suffer); the hub and a neighbour's kernel carry on."""
    small_home.spawn()
    small_home.open_server()
    filled = small_home.execute(FILL_HOME, timeout=300)
    assert filled.error is None, filled.error
    error_number, megabytes = filled.stdout.split()
    assert int(error_number) == 122 and 56 <= int(megabytes) <= 64  # EDQUOT, at their limit (64M)
    started = time.monotonic()
    assert pair["student2"].execute("print(6 * 7)").stdout.strip() == "42"
    assert time.monotonic() - started < 30
    pair["student2"].write_file("still-writable.txt", "the neighbour's disk is not full")
    assert requests.get(f"{trust_hub.url}/hub/health", timeout=10).status_code == 200
