"""The guard's shell loop (ops/nodeguard.py): valid sh, checks every rule, puts the set back in order."""

import subprocess

from d2lhub.hub import firewall
from d2lhub.ops import nodeguard


def test_the_guard_checks_each_rule_and_inserts_the_set_in_order():
    wanted = firewall.node_rules("room", "br-0123456789ab", "10.1.2.3", 8081, ("10.0.0.0/8",))
    text = nodeguard.script("room", wanted)
    assert subprocess.run(["sh", "-n"], input=text, text=True).returncode == 0
    assert text.count('"$IPT" -w -C ') == len(wanted)
    inserts = [line.strip() for line in text.splitlines() if '"$IPT" -w -I ' in line]
    assert len(inserts) == len(wanted)
    assert inserts[-1].endswith("-j RETURN") and "RELATED,ESTABLISHED" in inserts[-1]  # inserted last: stands first
    [marker] = [line.split("grep -E -- ")[1].split(" | ")[0] for line in text.splitlines() if "grep -E" in line]
    pattern = subprocess.run(["sh", "-c", f"printf '%s\\n' {marker}"], capture_output=True, text=True).stdout.strip()
    listing = ['-A INPUT -i br -m comment --comment "d2lhub:room" -j DROP',  # iptables-nft
               "-A INPUT -i br -m comment --comment d2lhub:room -j DROP",  # iptables-legacy
               '-A INPUT -i br -m comment --comment "d2lhub:room2" -j DROP', "-A INPUT -j ACCEPT"]
    kept = subprocess.run(["grep", "-E", "--", pattern], input="\n".join(listing), capture_output=True, text=True)
    assert kept.stdout.splitlines() == listing[:2]  # only this instance's rules are replaced
