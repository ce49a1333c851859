"""network.egress, tried for real: a real hub, a real squid, real students' containers.

The outside world is played by two containers of the test's own on a network of their own:
`pypi.d2ltest` (a package index holding one small wheel) and `forbidden.d2ltest`. The hub's
`network.hosts` gives the proxy their names, `network.allow` lists only the first. Traffic goes
only to these containers, the hub's own proxy and 127.0.0.0/8. `spawner.blocked_networks` is
narrowed to cloud metadata, so what stops a direct connection is the egress rule and nothing else
(that rule refuses with an ICMP error, which a connection sees at once as "no route to host",
where the other fences drop silently).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import signal
import subprocess
import tarfile
import time
import uuid
import zipfile

import pytest
from harness import TEST_PREFIX, launched_hub, remove_labelled

from d2lhub import labels
from d2lhub.hub import egress, firewall
from d2lhub.state import egress_proxy_port, hub_api_port

pytestmark = pytest.mark.integration

ALLOWED, FORBIDDEN = "pypi.d2ltest", "forbidden.d2ltest"
POLICY = "blocked by the classroom's egress policy (network.egress: allowlist); ask your instructor"
PACKAGE = "d2ltest-hello"

# Run inside a student's container (as the student, with the server's environment): each probe says
# what happened and how long it took.
PROBE = r"""
import json, os, socket, sys, time, urllib.error, urllib.request
def fetch(url, proxied=True):
    opener = urllib.request.build_opener(*([] if proxied else [urllib.request.ProxyHandler({})]))
    start = time.monotonic()
    try:
        with opener.open(url, timeout=10) as answer:
            return {"status": answer.status, "body": answer.read().decode(), "seconds": time.monotonic() - start}
    except urllib.error.HTTPError as error:
        return {"status": error.code, "body": error.read().decode(), "seconds": time.monotonic() - start}
    except OSError as error:
        return {"status": None, "error": repr(error), "seconds": time.monotonic() - start}
def connect(host, port):
    start = time.monotonic()
    try:
        socket.create_connection((host, port), timeout=5).close()
        return {"open": True, "seconds": time.monotonic() - start}
    except OSError as error:
        return {"open": False, "error": type(error).__name__, "errno": error.errno, "seconds": time.monotonic() - start}
print(json.dumps({name: eval(call) for name, call in json.loads(sys.argv[1]).items()}))
"""


def wheel() -> tuple[str, bytes]:
    """A one-module wheel, `d2ltest-hello`, made by hand."""
    name = "d2ltest_hello-1.0-py3-none-any.whl"
    files = {
        "d2ltest_hello/__init__.py": b'GREETING = "hello from the allowed index"\n',
        "d2ltest_hello-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: d2ltest-hello\nVersion: 1.0\n",
        "d2ltest_hello-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: d2lhub-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
              for path, data in files.items()]
    files["d2ltest_hello-1.0.dist-info/RECORD"] = ("\n".join(record + ["d2ltest_hello-1.0.dist-info/RECORD,,"]) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return name, buffer.getvalue()


def site(host: str) -> dict[str, bytes]:
    """What a test host serves: the allowed one a PEP 503 index with the wheel, the other a page."""
    if host == FORBIDDEN:
        return {"index.html": b"the forbidden host answered\n",
                f"simple/{PACKAGE}/index.html": b"<a href='/index.html'>nothing</a>\n"}
    name, data = wheel()
    return {
        "index.html": b"the allowed host answered\n",
        "simple/index.html": f"<a href='{PACKAGE}/'>{PACKAGE}</a>\n".encode(),
        f"simple/{PACKAGE}/index.html": f"<a href='/packages/{name}'>{name}</a>\n".encode(),
        f"packages/{name}": data,
    }


def tar_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, data in files.items():
            info = tarfile.TarInfo(f"site/{path}")
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def outside(docker_client):
    """The two hosts on a network of their own -> {name: address}; removed afterwards by label."""
    instance = f"{TEST_PREFIX}{uuid.uuid4().hex[:8]}-outside"
    tags = {labels.INSTANCE: instance}
    network = docker_client.networks.create(instance, driver="bridge", labels=tags)
    addresses = {}
    try:
        for host in (ALLOWED, FORBIDDEN):
            served = docker_client.containers.create(
                "d2lhub/student:latest", ["python3", "-m", "http.server", "8080", "--directory", "/tmp/site"],
                name=f"{instance}-{host.split('.')[0]}", labels=tags, network=network.name, user="65534:65534",
                entrypoint=[],
            )
            served.put_archive("/tmp", tar_of(site(host)))
            served.start()
            served.reload()
            addresses[host] = served.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
        yield addresses
    finally:
        remove_labelled(docker_client, lambda value: value == instance)


def hub_with(policy: str, outside: dict, tmp_path_factory, docker_client):
    network = {"egress": policy, "allow": [ALLOWED], "hosts": outside}
    return launched_hub(tmp_path_factory.mktemp(f"egress-{policy}"), docker_client,
                        network=network, spawner={"blocked_networks": ["169.254.0.0/16"]})


@pytest.fixture(scope="module")
def allowlist_hub(outside, tmp_path_factory, docker_client):
    yield from hub_with("allowlist", outside, tmp_path_factory, docker_client)


@pytest.fixture(scope="module")
def closed_hub(outside, tmp_path_factory, docker_client):
    yield from hub_with("none", outside, tmp_path_factory, docker_client)


def student_container(hub, docker_client):
    browser = hub.browser("student1")
    browser.spawn()
    return docker_client.containers.get(f"{hub.classroom.spawner.instance}-student1")


@pytest.fixture(scope="module")
def allowlisted(allowlist_hub, docker_client):
    return student_container(allowlist_hub, docker_client)


def run_in(container, *command: str, timeout: int = 120) -> tuple[int, str]:
    """A command in the student's container, as the student, with the server's environment (as a terminal)."""
    code, output = container.exec_run(["timeout", str(timeout), *command], user=container.attrs["Config"]["User"])
    return code, output.decode(errors="replace")


def probe(container, **calls: str) -> dict:
    code, output = run_in(container, "python3", "-c", PROBE, json.dumps(calls))
    assert code == 0, output
    return json.loads(output.strip().splitlines()[-1])


def rules_for(hub, docker_client) -> tuple[str, list[str], list[str]]:
    network = docker_client.networks.get(hub.classroom.spawner.instance)
    bridge = firewall.bridge_name(network.id)
    listed = {chain: subprocess.run(["iptables", "-S", chain], capture_output=True, text=True, check=True).stdout
              for chain in ("DOCKER-USER", "INPUT")}
    ours = {chain: [line for line in text.splitlines() if f"-i {bridge} " in line] for chain, text in listed.items()}
    return network.attrs["IPAM"]["Config"][0]["Gateway"], ours["DOCKER-USER"], ours["INPUT"]


def test_allowlist_rules_refuse_everything_out_but_the_proxy(allowlist_hub, docker_client):
    _, forward, host = rules_for(allowlist_hub, docker_client)
    refuse = [line for line in forward if "REJECT" in line]
    assert len(refuse) == 1 and "! --ctstate RELATED,ESTABLISHED" in refuse[0] and "-d " not in refuse[0]
    assert forward[-1] == refuse[0]  # after the blocked ranges
    accepted = [line.split("--dport ")[1].split()[0] for line in host if "--dport" in line and line.endswith("ACCEPT")]
    assert accepted == [str(hub_api_port(allowlist_hub.classroom)), str(egress_proxy_port(allowlist_hub.classroom))]
    assert host[-1].endswith("-j DROP")


def squid_of(hub) -> int:
    """The pid of the hub's squid (the recorded service is the shell around it)."""
    record = json.loads((hub.classroom.hub.state_dir / "services" / f"{egress.SERVICE}.json").read_text())
    children = open(f"/proc/{record['pid']}/task/{record['pid']}/children").read().split()
    return int(children[0])


def test_squid_accepts_its_config_and_runs_for_the_hub(allowlist_hub, docker_client):
    where = egress.folder(allowlist_hub.classroom)
    gateway, _, _ = rules_for(allowlist_hub, docker_client)
    port = egress_proxy_port(allowlist_hub.classroom)
    listening = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    assert [line.split()[3] for line in listening.splitlines()] == [f"{gateway}:{port}"]  # the bridge's gateway only
    parsed = subprocess.run(["squid", "-k", "parse", "-f", str(where / "squid.conf")], capture_output=True, text=True)
    assert parsed.returncode == 0, parsed.stderr[-2000:]
    assert not [line for line in parsed.stderr.splitlines() if "ERROR" in line or "FATAL" in line]
    command = open(f"/proc/{squid_of(allowlist_hub)}/cmdline", "rb").read().split(b"\0")  # squid, under its shell
    assert command[:2] == [b"/usr/sbin/squid", b"-N"], command
    assert command[-2:] == [str(where / "squid.conf").encode(), b""]


def test_student_reaches_the_allowed_host_by_name_and_pip_installs_from_it(allowlisted):
    code, env = run_in(allowlisted, "env")
    assert code == 0 and "HTTP_PROXY=http://" in env and "D2LHUB_EGRESS=allowlist" in env
    reached = probe(allowlisted, page=f"fetch('http://{ALLOWED}:8080/')")
    assert reached["page"]["status"] == 200 and "the allowed host answered" in reached["page"]["body"]
    started = time.monotonic()
    # what a student types in a terminal: plain `pip install`, into ~/.local, which their kernels import from
    code, output = run_in(allowlisted, "pip", "install", "--index-url", f"http://{ALLOWED}:8080/simple",
                          "--trusted-host", ALLOWED, PACKAGE)
    assert code == 0, output
    assert "Successfully installed d2ltest-hello-1.0" in output
    code, output = run_in(allowlisted, "python3", "-c", "import d2ltest_hello; print(d2ltest_hello.__file__, d2ltest_hello.GREETING)")
    assert output.split() == ["/home/jovyan/.local/lib/python3.11/site-packages/d2ltest_hello/__init__.py",
                              "hello", "from", "the", "allowed", "index"], output
    assert time.monotonic() - started < 90


def test_a_host_not_listed_is_refused_fast_with_a_page_naming_the_policy(allowlisted):
    refused = probe(allowlisted, page=f"fetch('http://{FORBIDDEN}:8080/')", tunnel=f"fetch('https://{FORBIDDEN}/')")
    assert refused["page"]["status"] == 403
    assert POLICY in refused["page"]["body"] and "the forbidden host answered" not in refused["page"]["body"]
    assert refused["page"]["seconds"] < 5
    assert refused["tunnel"]["status"] is None and "403" in refused["tunnel"]["error"]  # https: the CONNECT is refused
    assert refused["tunnel"]["seconds"] < 5
    started = time.monotonic()  # pip over https, as from a real index: the proxy refuses the tunnel
    code, output = run_in(allowlisted, "pip", "install", "--index-url", f"https://{FORBIDDEN}/simple", "d2ltest-elsewhere")
    assert code != 0 and "Tunnel connection failed: 403" in output, output
    assert time.monotonic() - started < 30, "pip should fail fast, not retry for minutes"


def test_a_proxy_that_dies_is_started_again_by_the_hub(allowlist_hub, allowlisted):
    first = squid_of(allowlist_hub)
    os.kill(first, signal.SIGKILL)
    deadline, again = time.monotonic() + 90, None
    while time.monotonic() < deadline and again is None:
        time.sleep(1)
        try:
            again = squid_of(allowlist_hub)
        except (OSError, IndexError, ValueError):  # between the two: no shell, or no squid under it yet
            continue
        if again == first:
            again = None
    assert again, "the hub did not start its egress proxy again"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reached = probe(allowlisted, page=f"fetch('http://{ALLOWED}:8080/')")
        if reached["page"]["status"] == 200:
            break
        time.sleep(1)
    assert reached["page"]["status"] == 200, reached


def around_the_proxy(hub, outside: dict, gateway: str) -> dict[str, str]:
    """Probes that set the proxy aside: each test host's address, the proxy's and the hub's ports. (No probe
    by name: a name looked up in the container would go to the machine's DNS, outside the test's own hosts.)"""
    return {
        "allowed": f"connect('{outside[ALLOWED]}', 8080)",
        "forbidden": f"connect('{outside[FORBIDDEN]}', 8080)",
        "unproxied": f"fetch('http://{outside[ALLOWED]}:8080/', proxied=False)",
        "proxy": f"connect('{gateway}', {egress_proxy_port(hub.classroom)})",
        "hub": f"connect('{gateway}', {hub_api_port(hub.classroom)})",
    }


def assert_refused_by_the_egress_rule(tried: dict) -> None:
    for name in ("allowed", "forbidden"):  # EHOSTUNREACH at once: the rule's ICMP answer, not a silent drop
        assert not tried[name]["open"] and tried[name]["errno"] == 113 and tried[name]["seconds"] < 2, tried[name]
    assert tried["unproxied"]["status"] is None
    assert tried["hub"]["open"]  # the server still talks to the hub


def test_a_connection_around_the_proxy_is_refused(allowlist_hub, allowlisted, outside, docker_client):
    gateway, _, _ = rules_for(allowlist_hub, docker_client)
    tried = probe(allowlisted, **around_the_proxy(allowlist_hub, outside, gateway))
    assert_refused_by_the_egress_rule(tried)
    assert tried["proxy"]["open"]


def test_none_lets_nothing_leave(closed_hub, outside, docker_client):
    gateway, forward, host = rules_for(closed_hub, docker_client)
    assert any("REJECT" in line and "! --ctstate RELATED,ESTABLISHED" in line for line in forward)
    assert [line for line in host if "--dport" in line] == [
        next(line for line in host if f"--dport {hub_api_port(closed_hub.classroom)}" in line)
    ]
    assert not (closed_hub.classroom.hub.state_dir / "services" / f"{egress.SERVICE}.json").exists()
    container = student_container(closed_hub, docker_client)
    code, env = run_in(container, "env")
    assert code == 0 and "D2LHUB_EGRESS=none" in env and "HTTP_PROXY" not in env and "https_proxy" not in env
    tried = probe(container, **around_the_proxy(closed_hub, outside, gateway))
    assert_refused_by_the_egress_rule(tried)
    assert not tried["proxy"]["open"]  # no proxy, and the host does not answer there
