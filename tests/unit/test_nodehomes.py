"""Where a new home goes (spawner.homes: node) and the record of which node holds whose home."""

import pytest

from d2lhub.config import Classroom
from d2lhub.engine import Node
from d2lhub.hub import nodehomes
from d2lhub.hub.homes import HomeRefused

G = 1024**3


def node(hostname, cpus, gpus="", availability="active"):
    return Node(hostname, f"id-{hostname}", "worker", availability, "ready", cpus, 64 * G,
                tuple(g for g in gpus.split(",") if g))


def classroom(tmp_path, reserve=True) -> Classroom:
    return Classroom.model_validate({
        "hub": {"state_dir": str(tmp_path)},
        "limits": {"cpu": 1, "memory": "2G"},
        "profiles": [{"name": "cpu", "display_name": "CPU"},
                     {"name": "gpu", "display_name": "GPU", "image": "student_gpu", "gpus": 1}],
        "gpus": {"reserve_nodes": reserve},
        "spawner": {"kind": "swarm", "homes": "node"},
    })


def test_a_new_home_goes_where_there_is_most_room_per_home_held(tmp_path):
    room = classroom(tmp_path)
    nodes = [node("big", 16), node("small", 4), node("gpu", 32, "0"), node("away", 64, availability="drain")]
    cpu = room.profile("cpu")
    assert nodehomes.choose(nodes, room, cpu, {}).hostname == "big"  # the GPU node is reserved, a drained one skipped
    held = {f"s{i}": "big" for i in range(4)}  # 16 / 5 < 4 / 1
    assert nodehomes.choose(nodes, room, cpu, held).hostname == "small"
    assert nodehomes.choose(nodes, classroom(tmp_path, reserve=False), cpu, held).hostname == "gpu"


def test_no_node_for_a_new_home_is_said_plainly(tmp_path):
    with pytest.raises(HomeRefused, match="No node can hold a new home for a CPU server"):
        nodehomes.choose([node("gpu", 8, "0")], classroom(tmp_path), classroom(tmp_path).profile("cpu"), {})


def test_records_are_kept_across_opens(tmp_path):
    room = classroom(tmp_path)
    with nodehomes.records(room) as held:
        held["ann"] = "node1"
    with nodehomes.records(room) as held:
        assert held == {"ann": "node1"}
        held["ann"] = "node2"
    with nodehomes.records(room) as held:
        assert held == {"ann": "node2"}


def test_homes_on_nodes_without_a_swarm_is_refused_by_name():
    with pytest.raises(ValueError, match="spawner.homes: node keeps each home on a Swarm node: it needs spawner.kind: swarm"):
        Classroom.model_validate({"spawner": {"homes": "node"}})
