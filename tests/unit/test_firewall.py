"""The fence around the students' bridge, as rules (the integration tests read them off the host)."""

from d2lhub import firewall


def test_rules_block_metadata_and_private_ranges_and_open_only_the_hub_api():
    wanted = firewall.rules("room", "br-0123456789ab", 8081, ("169.254.0.0/16", "10.0.0.0/8"))
    forward = [r for r in wanted if r.table_chain == "DOCKER-USER"]
    host = [r for r in wanted if r.table_chain == "INPUT"]
    assert [r.spec[r.spec.index("-d") + 1] for r in forward] == ["169.254.0.0/16", "10.0.0.0/8"]
    assert all(r.spec[-1] == "DROP" and r.spec[:2] == ("-i", "br-0123456789ab") for r in forward)
    assert "ESTABLISHED,RELATED" in host[0].spec
    assert host[1].spec[host[1].spec.index("--dport") + 1] == "8081" and host[1].spec[-1] == "ACCEPT"
    assert host[-1].spec[-1] == "DROP"  # everything else from the bridge to the host
    assert all("d2lhub:room" in r.spec for r in wanted)


def test_bridge_name_is_dockers():
    assert firewall.bridge_name("0123456789abcdef0123") == "br-0123456789ab"


def test_swarm_bridge_keeps_containers_apart_by_rule():
    wanted = firewall.rules("room", "br-0123456789ab", 8081, ("10.0.0.0/8",), apart=True)
    assert wanted[0].table_chain == "DOCKER-USER"
    assert wanted[0].spec[:4] == ("-i", "br-0123456789ab", "-o", "br-0123456789ab") and wanted[0].spec[-1] == "DROP"
    assert not any("-o" in r.spec for r in firewall.rules("room", "br-0123456789ab", 8081, ("10.0.0.0/8",)))
