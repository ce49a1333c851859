"""Capacity from node resources and profile limits; node facts read from Swarm's node objects."""

import pytest

from d2lhub.config import Classroom
from d2lhub.engine import Node, node_address
from d2lhub.labels import NODE_GPU_FLAG as GPU_FLAG_LABEL
from d2lhub.labels import NODE_GPUS as GPU_NODE_LABEL
from d2lhub.ops.nodes import NodeUse, capacity, fits_on, node_labels

G = 1024**3


def swarm_node(hostname, cpus, memory_g, gpus="", availability="active", state="ready"):
    labels = {GPU_NODE_LABEL: gpus} if gpus else {}
    return {
        "ID": f"id-{hostname}",
        "Spec": {"Role": "worker", "Availability": availability, "Labels": labels},
        "Description": {"Hostname": hostname, "Resources": {"NanoCPUs": int(cpus * 1e9), "MemoryBytes": memory_g * G}},
        "Status": {"State": state},
    }


def classroom(policy="exclusive", per_gpu=2) -> Classroom:
    return Classroom.model_validate(
        {
            "limits": {"cpu": 1, "memory": "3G"},
            "profiles": [
                {"name": "cpu", "display_name": "CPU"},
                {"name": "gpu", "display_name": "1 GPU", "image": "student_gpu", "gpus": 1,
                 "limits": {"cpu": 4, "memory": "16G"}},
                {"name": "gpu2", "display_name": "2 GPUs", "image": "student_gpu", "gpus": 2,
                 "limits": {"cpu": 4, "memory": "16G"}},
            ],
            "gpus": {"policy": policy, "per_gpu": per_gpu},
        }
    )


def test_node_facts_come_from_swarm_attrs():
    node = Node.from_swarm(swarm_node("gpu1", 32, 128, gpus="0,1,2,3"))
    assert (node.hostname, node.cpus, node.memory, node.gpus) == ("gpu1", 32.0, 128 * G, ("0", "1", "2", "3"))
    assert node.schedulable
    assert not Node.from_swarm(swarm_node("x", 4, 8, availability="drain")).schedulable
    assert not Node.from_swarm(swarm_node("x", 4, 8, state="down")).schedulable


@pytest.mark.parametrize(
    "attrs, profile, policy, expected",
    [
        (swarm_node("cpu1", 16, 64), "cpu", "exclusive", 16),  # CPU-bound: 16 cores
        (swarm_node("cpu2", 64, 32), "cpu", "exclusive", 10),  # memory-bound: 32G / 3G
        (swarm_node("cpu1", 16, 64), "gpu", "exclusive", 0),  # no GPUs there
        (swarm_node("gpu1", 32, 128, "0,1,2,3"), "gpu", "exclusive", 4),  # GPU-bound
        (swarm_node("gpu1", 32, 128, "0,1,2,3"), "gpu", "shared", 8),  # memory-bound 128/16 at 2 per GPU
        (swarm_node("gpu1", 32, 128, "0,1,2,3"), "gpu2", "exclusive", 2),
        (swarm_node("gpu1", 32, 128, "0,1,2,3", availability="drain"), "cpu", "exclusive", 0),
    ],
)
def test_fits_on(attrs, profile, policy, expected):
    assert fits_on(Node.from_swarm(attrs), classroom(policy), profile) == expected


def test_capacity_sums_over_nodes_per_profile():
    found = [Node.from_swarm(swarm_node("cpu1", 16, 64)), Node.from_swarm(swarm_node("gpu1", 8, 64, "0,1"))]
    assert capacity(found, classroom()) == {"cpu": 16 + 8, "gpu": 2, "gpu2": 1}


def test_node_labels():
    assert node_labels(("0", "1")) == {GPU_NODE_LABEL: "0,1", GPU_FLAG_LABEL: "true"}
    assert node_labels(()) == {}


def test_node_address_is_the_swarm_address_even_for_a_manager_that_says_0000():
    assert node_address({"Status": {"Addr": "10.1.0.7"}}) == "10.1.0.7"
    assert node_address({"Status": {"Addr": "0.0.0.0"}, "ManagerStatus": {"Addr": "10.1.0.2:2377"}}) == "10.1.0.2"
    assert node_address({"Status": {}}) == "127.0.0.1"


def test_free_room_is_what_the_running_servers_leave():
    gpu_node = Node.from_swarm(swarm_node("gpu1", 32, 128, "0,1,2,3"))
    holding = NodeUse(students=("a", "b"), cpus=8, memory=32 * G, gpus=("0", "1"))
    assert fits_on(gpu_node, classroom(), "gpu", holding) == 2  # two GPUs left
    assert fits_on(gpu_node, classroom(), "gpu2", holding) == 1
    assert fits_on(gpu_node, classroom(), "cpu", holding) == 24  # 32 - 8 cores
    full = NodeUse(students=("a",), cpus=31.5, memory=0)
    assert fits_on(gpu_node, classroom(), "cpu", full) == 0  # half a core is no room for a 1-core server

