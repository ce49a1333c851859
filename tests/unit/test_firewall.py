"""The fence around the students' bridge, as rules (the integration tests read them off the host)."""

from d2lhub.hub import firewall


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


def printed(rules: list[firewall.Rule]) -> dict[str, str]:
    """What `iptables -S CHAIN` prints for these rules: normalised, not the text they were added with."""
    out: dict[str, list[str]] = {"DOCKER-USER": ["-N DOCKER-USER"], "INPUT": ["-P INPUT ACCEPT"]}
    for rule in rules:
        spec = " ".join(f'"{part}"' if part.startswith("d2lhub:") else part for part in rule.spec)
        spec = spec.replace("ESTABLISHED,RELATED", "RELATED,ESTABLISHED").replace("-p tcp --dport", "-p tcp -m tcp --dport")
        out[rule.table_chain].append(f"-A {rule.table_chain} {spec}")
    return {chain: "\n".join(lines) + "\n" for chain, lines in out.items()}


def test_rules_in_place_until_the_engine_flushes_a_chain(monkeypatch):
    blocked = ("169.254.0.0/16", "10.0.0.0/8")
    wanted = firewall.rules("d2l", "br-0123456789ab", 8081, blocked)
    listing = printed(wanted)
    applied = []
    monkeypatch.setattr(
        firewall, "iptables",
        lambda *args, check=True: type("R", (), {"stdout": listing[args[1]] if args[0] == "-S" else ""})(),
    )
    monkeypatch.setattr(firewall, "apply", lambda *args: applied.append(args))
    assert firewall.in_place("d2l", "br-0123456789ab", 8081, blocked)
    assert not firewall.ensure("d2l", "br-0123456789ab", 8081, blocked) and applied == []
    assert not firewall.in_place("d2l", "br-ffffffffffff", 8081, blocked)  # the network was recreated
    assert not firewall.in_place("d2l", "br-0123456789ab", 9091, blocked)
    listing["DOCKER-USER"] = "-N DOCKER-USER\n-A DOCKER-USER -j RETURN\n"  # a restarted engine emptied it
    assert firewall.ensure("d2l", "br-0123456789ab", 8081, blocked)
    assert applied == [("d2l", "br-0123456789ab", 8081, blocked, False)]


def test_allowlist_refuses_every_new_connection_out_and_opens_the_proxy_port():
    wanted = firewall.rules("room", "br-0123456789ab", 8081, ("10.0.0.0/8",), egress="allowlist", proxy_port=8082)
    forward = [r.spec for r in wanted if r.table_chain == "DOCKER-USER"]
    host = [r.spec for r in wanted if r.table_chain == "INPUT"]
    assert forward[0][forward[0].index("-d") + 1] == "10.0.0.0/8"
    refuse = forward[-1]  # after the blocked ranges: anything else a container starts is refused at once
    assert refuse[:2] == ("-i", "br-0123456789ab") and "-d" not in refuse
    assert refuse[refuse.index("!") + 1:refuse.index("!") + 3] == ("--ctstate", "RELATED,ESTABLISHED")
    assert refuse[-4:] == ("-j", "REJECT", "--reject-with", "icmp-admin-prohibited")
    ports = [spec[spec.index("--dport") + 1] for spec in host if "--dport" in spec]
    assert ports == ["8081", "8082"] and host[-1][-1] == "DROP"


def test_none_refuses_everything_and_opens_no_proxy_port_and_open_is_todays_fence():
    closed = firewall.rules("room", "br-0123456789ab", 8081, (), egress="none", proxy_port=8082)
    assert [r.spec[-1] for r in closed if r.table_chain == "DOCKER-USER"] == ["icmp-admin-prohibited"]
    assert [s for r in closed for s in r.spec if s in ("8081", "8082")] == ["8081"]
    today = firewall.rules("room", "br-0123456789ab", 8081, ("10.0.0.0/8",))
    assert firewall.rules("room", "br-0123456789ab", 8081, ("10.0.0.0/8",), egress="open", proxy_port=8082) == today
    assert not any("REJECT" in r.spec for r in today)


def test_a_changed_policy_is_not_in_place(monkeypatch):
    blocked = ("10.0.0.0/8",)
    listing = printed(firewall.rules("d2l", "br-0123456789ab", 8081, blocked))  # open: as a hub before the change
    monkeypatch.setattr(
        firewall, "iptables",
        lambda *args, check=True: type("R", (), {"stdout": listing[args[1]] if args[0] == "-S" else ""})(),
    )
    assert firewall.in_place("d2l", "br-0123456789ab", 8081, blocked)
    assert not firewall.in_place("d2l", "br-0123456789ab", 8081, blocked, egress="allowlist", proxy_port=8082)
    assert not firewall.in_place("d2l", "br-0123456789ab", 8081, blocked, egress="none", proxy_port=8082)


def test_a_worker_node_forwards_only_to_the_hubs_api_and_lets_only_the_hub_in():
    bridge = "br-0123456789ab"
    wanted = firewall.node_rules("room", bridge, "192.168.1.5", 8081, ("192.168.0.0/16",))
    forward = [" ".join(r.spec) for r in wanted if r.table_chain == "DOCKER-USER"]
    host = [" ".join(r.spec) for r in wanted if r.table_chain == "INPUT"]
    assert forward[0].startswith(f"-i {bridge} -m conntrack --ctstate RELATED,ESTABLISHED")  # replies to the hub pass
    assert forward[1].startswith(f"-i {bridge} -d 192.168.1.5/32 -p tcp --dport 8081") and forward[1].endswith("RETURN")
    assert forward[2].startswith(f"! -s 192.168.1.5/32 -o {bridge} -m conntrack --ctstate NEW")  # published ports
    assert forward[3].startswith(f"-i {bridge} -o {bridge}") and forward[4].startswith(f"-i {bridge} -d 192.168.0.0/16")
    assert all(rule.endswith("DROP") for rule in forward[2:])
    assert len(host) == 2 and host[-1].endswith("DROP") and not any("--dport" in rule for rule in host)
    assert all("d2lhub:room" in r.spec for r in wanted)
