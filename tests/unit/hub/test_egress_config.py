"""network.egress as text: the proxy's config and deny page, what students' servers are told, the
hub's service, and classroom.yaml's checks (pure functions; tests/integration/test_egress.py runs them)."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest
import yaml
from jupyterhub.app import JupyterHub
from test_traits import applied, classroom_from, make_facts

from d2lhub import config, state
from d2lhub.hub import egress
from d2lhub.network import Network

WHERE = Path("/run/d2lhub/room/egress")


def directives(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_squid_listens_on_the_gateway_answers_students_and_forwards_only_the_allowed_hosts():
    network = Network(allow=("pypi.org", ".pythonhosted.org"))
    lines = directives(egress.squid_config(network, "172.31.0.1", 8082, "172.31.0.0/16", WHERE))
    assert lines[0] == "http_port 172.31.0.1:8082"  # only where the students' bridge reaches the host
    assert "acl students src 172.31.0.0/16" in lines
    assert "acl allowed dstdomain -n pypi.org .pythonhosted.org" in lines  # -n: no reverse lookups
    access = [line for line in lines if line.startswith("http_access")]
    assert access == [
        "http_access deny !students",
        "http_access deny CONNECT !https_port",
        "http_access deny !allowed",  # before any rule that needs a name resolved
        "http_access deny to_localhost",  # never the hub's own loopback services
        "http_access allow allowed",
        "http_access deny all",
    ]
    assert f"deny_info {egress.DENY_PAGE} allowed" in lines
    assert f"error_directory {WHERE / 'errors'}" in lines
    assert f"hosts_file {WHERE / 'hosts'}" in lines
    assert "access_log none" in lines and "cache deny all" in lines


def test_an_empty_allow_list_allows_nothing():
    lines = directives(egress.squid_config(Network(allow=()), "10.0.0.1", 1, "10.0.0.0/24", WHERE))
    assert "acl allowed dstdomain -n nothing.invalid" in lines


def test_the_deny_page_names_the_policy_and_the_allowed_hosts():
    page = egress.deny_page(Network(allow=("pypi.org",)))
    assert "blocked by the classroom's egress policy (network.egress: allowlist); ask your instructor" in page
    assert "%U" in page and "pypi.org" in page


def test_hosts_and_files():
    network = Network(hosts={"mirror.campus": "10.1.2.3", "a.test": "172.20.0.5"})
    assert egress.hosts_file(network) == "172.20.0.5 a.test\n10.1.2.3 mirror.campus\n"
    made = egress.files(network, "172.31.0.1", 8082, "172.31.0.0/16", WHERE)
    assert set(made) == {"squid.conf", "hosts", f"errors/{egress.DENY_PAGE}"}
    shell, flag, script = egress.command("/usr/sbin/squid", WHERE)
    assert (shell, flag) == ("/bin/sh", "-c")
    assert script.startswith(f"/usr/sbin/squid -N -d 1 -f {WHERE}/squid.conf & squid=$!; trap ")


def test_students_are_pointed_at_the_proxy_only_under_allowlist():
    proxy = "http://172.31.0.1:8082"
    env = egress.student_environment(Network(), proxy, "172.31.0.1")
    assert env["HTTP_PROXY"] == env["https_proxy"] == proxy
    assert env["NO_PROXY"].split(",") == ["localhost", "127.0.0.1", "::1", "172.31.0.1"]  # the hub's API goes direct
    assert env["D2LHUB_EGRESS"] == "allowlist" and env["PIP_RETRIES"] == "1"
    assert egress.student_environment(Network(egress="none"), "", "172.31.0.1") == {"D2LHUB_EGRESS": "none"}
    assert egress.student_environment(Network(egress="open"), "", "172.31.0.1") == {"D2LHUB_EGRESS": "open"}


def services_of(c) -> dict[str, dict]:
    return {s["name"]: s for s in JupyterHub(config=c).services}


def test_the_hub_runs_the_proxy_as_a_managed_service_and_tells_the_servers(tmp_path):
    room = classroom_from({}, tmp_path / "state")
    command = ("/usr/sbin/squid", "-N", "-d", "1", "-f", "/run/d2lhub/d2lhub/egress/squid.conf")
    c = applied(room, make_facts(egress_proxy="http://172.31.0.1:8082", egress_command=command))
    proxy = services_of(c)[egress.SERVICE]
    records = str(state.services_dir(room))
    assert proxy["command"] == ["/opt/venv/bin/python", "-m", "d2lhub.hub.servicerun", records, "egress-proxy", "--", *command]
    assert c.Spawner.environment["HTTPS_PROXY"] == "http://172.31.0.1:8082"

    closed = classroom_from({"network": {"egress": "none"}}, tmp_path / "state")
    c = applied(closed, make_facts())
    assert egress.SERVICE not in services_of(c)
    assert "HTTP_PROXY" not in c.Spawner.environment and c.Spawner.environment["D2LHUB_EGRESS"] == "none"


def test_the_proxy_listens_beside_the_hub_api(tmp_path):
    room = classroom_from({"hub": {"port": 9000}}, tmp_path / "state")
    assert (state.hub_api_port(room), state.egress_proxy_port(room)) == (9081, 9082)


@pytest.mark.parametrize(("section", "message"), [
    ({"egress": "closed"}, "network.egress: Input should be 'none', 'allowlist' or 'open'"),
    ({"allow": ["pypi.org", "http://files.pythonhosted.org"]}, "network.allow: entry 1: 'http://files.pythonhosted.org' "
     "is not a host name"),
    ({"allow": [".example.org", "www.example.org"]}, "network.allow: 'www.example.org' is inside '.example.org' already"),
    ({"allow": ["pypi.org", "PyPI.org"]}, "network.allow: 'pypi.org' is listed twice"),
    ({"hosts": {"mirror.campus": "10.1.2"}}, "network.hosts.mirror.campus: Input is not a valid IPv4 address"),
    ({"hosts": {"bad name": "10.1.2.3"}}, "network.hosts: name 'bad name': 'bad name' is not a host name"),
    ({"proxy": "squid"}, "network.proxy: unknown key"),
])
def test_bad_network_keys_are_named(tmp_path, section, message):
    path = tmp_path / "classroom.yaml"
    path.write_text(yaml.safe_dump({"network": section}))
    with pytest.raises(config.ConfigError) as raised:
        config.load(path)
    assert f"{path}: {message}" in str(raised.value)


def test_allowlist_and_none_need_the_firewall():
    with pytest.raises(ValueError, match="network.egress: none is kept by the packet rules: it needs spawner.firewall"):
        config.Classroom.model_validate({"network": {"egress": "none"}, "spawner": {"firewall": False}})
    open_room = config.Classroom.model_validate({"network": {"egress": "open"}, "spawner": {"firewall": False}})
    assert open_room.network.egress == "open"


def test_defaults_are_the_package_index():
    network = config.Classroom().network
    assert network.egress == "allowlist" and network.allow == ("pypi.org", "files.pythonhosted.org")
    assert Network(allow=(" .Example.ORG ",), hosts={"A.Test": "10.0.0.1"}).allow == (".example.org",)
    assert Network(hosts={"A.Test": "10.0.0.1"}).hosts == {"a.test": IPv4Address("10.0.0.1")}
