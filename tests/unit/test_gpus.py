"""The GPU allocator: never two students on one GPU under exclusive, never more than
per_gpu under shared, nothing leaked or handed out twice across hub restarts."""

import asyncio
import itertools
import json

import pytest

from d2lhub.config import Gpus
from d2lhub.hub.gpus import (
    LOCAL,
    Allocator,
    Assignment,
    Gpu,
    NoGpuFree,
    Queue,
    inventory,
    waiting_message,
)


def gpus(hosts: dict[str, int]) -> list[Gpu]:
    return [Gpu(host, str(i)) for host, count in hosts.items() for i in range(count)]


def exclusive(**kw) -> Gpus:
    return Gpus(policy="exclusive", **kw)


def check_invariants(allocator: Allocator) -> None:
    for gpu, holders in allocator.load().items():
        assert len(holders) <= allocator.capacity, f"{gpu} over capacity: {holders}"
    for assignment in allocator.assignments.values():
        assert len(set(assignment.ids)) == len(assignment.ids)


@pytest.mark.parametrize(
    "hosts, policy, per_gpu, count, fits",
    [
        ({LOCAL: 4}, "exclusive", 1, 1, 4),
        ({LOCAL: 4}, "shared", 3, 1, 12),
        ({LOCAL: 4}, "exclusive", 1, 2, 2),
        ({LOCAL: 3}, "exclusive", 1, 2, 1),
        ({"a": 2, "b": 3, "c": 1}, "exclusive", 1, 1, 6),
        ({"a": 2, "b": 3, "c": 1}, "exclusive", 1, 2, 2),  # 2 on a, 2 on b; b's third and c's one are stranded
        ({"a": 2, "b": 8}, "shared", 2, 4, 4),
        ({LOCAL: 4}, "none", 1, 1, 0),
    ],
)
def test_fills_exactly_to_capacity(hosts, policy, per_gpu, count, fits):
    allocator = Allocator(gpus(hosts), Gpus(policy=policy, per_gpu=per_gpu))
    given = []
    for n in range(fits):
        given.append(allocator.assign(f"s{n}", count))
        check_invariants(allocator)
    assert all(len(a.ids) == count for a in given)
    with pytest.raises(NoGpuFree, match="GPU"):
        allocator.assign("one-too-many", count)
    assert "one-too-many" not in allocator.assignments


def test_exclusive_never_shares_and_spreads_over_hosts():
    allocator = Allocator(gpus({"node-a": 2, "node-b": 2}), exclusive())
    first, second = allocator.assign("alice", 1), allocator.assign("bob", 1)
    assert first.host != second.host  # the emptier host first
    third, fourth = allocator.assign("carol", 1), allocator.assign("dave", 1)
    taken = [(a.host, i) for a in (first, second, third, fourth) for i in a.ids]
    assert len(set(taken)) == 4


def test_shared_puts_students_on_the_least_used_gpu():
    allocator = Allocator(gpus({LOCAL: 2}), Gpus(policy="shared", per_gpu=2))
    ids = [allocator.assign(f"s{n}", 1).ids[0] for n in range(4)]
    assert sorted(ids) == ["0", "0", "1", "1"]
    assert ids[:2] == ["0", "1"]


def test_same_holder_keeps_its_gpu_and_hosts_can_be_restricted():
    allocator = Allocator(gpus({"a": 1, "b": 1}), exclusive())
    got = allocator.assign("alice", 1, hosts=["b"])
    assert got == Assignment("b", ("0",))
    assert allocator.assign("alice", 1) == got
    with pytest.raises(NoGpuFree):
        allocator.assign("bob", 1, hosts=["b"])
    with pytest.raises(ValueError, match="count >= 1"):
        allocator.assign("carol", 0)


def test_release_twice_is_harmless_and_frees_the_gpu(tmp_path):
    allocator = Allocator(gpus({LOCAL: 1}), exclusive(), tmp_path / "gpus.json")
    allocator.assign("alice", 1)
    assert allocator.release("alice") == Assignment(LOCAL, ("0",))
    assert allocator.release("alice") is None
    assert allocator.assign("bob", 1).ids == ("0",)


def test_hub_restart_keeps_running_servers_gpus(tmp_path):
    path = tmp_path / "state/gpus.json"
    before = Allocator(gpus({LOCAL: 3}), exclusive(), path)
    held = {name: before.assign(name, 1) for name in ("alice", "bob")}
    after = Allocator(gpus({LOCAL: 3}), exclusive(), path)  # a new hub process
    assert after.assignments == held
    carol = after.assign("carol", 1)
    assert carol.ids[0] not in {a.ids[0] for a in held.values()}
    with pytest.raises(NoGpuFree):
        after.assign("dave", 1)
    assert json.loads(path.read_text())["assignments"]["carol"] == {"host": LOCAL, "ids": list(carol.ids)}
    assert not list(path.parent.glob(".gpus-*"))  # no partial files left


def test_reconcile_frees_containers_that_died_while_the_hub_was_down(tmp_path):
    path = tmp_path / "gpus.json"
    allocator = Allocator(gpus({LOCAL: 2}), exclusive(), path)
    alice, bob = allocator.assign("alice", 1), allocator.assign("bob", 1)
    restarted = Allocator(gpus({LOCAL: 2}), exclusive(), path)
    freed, adopted = restarted.reconcile({"alice": alice})  # bob's container is gone
    assert (freed, adopted) == (["bob"], [])
    assert restarted.assign("carol", 1) == bob
    assert Allocator(gpus({LOCAL: 2}), exclusive(), path).assignments == {"alice": alice, "carol": bob}


def test_reconcile_adopts_running_containers_a_lost_file_forgot(tmp_path):
    path = tmp_path / "gpus.json"
    allocator = Allocator(gpus({LOCAL: 2}), exclusive(), path)
    freed, adopted = allocator.reconcile({"alice": Assignment(LOCAL, ("1",))})
    assert (freed, adopted) == ([], ["alice"])
    assert allocator.assign("bob", 1).ids == ("0",)


def test_gpu_removed_from_inventory_stays_held_until_released():
    allocator = Allocator(gpus({LOCAL: 1}), exclusive())
    allocator.reconcile({"alice": Assignment(LOCAL, ("7",))})
    assert allocator.load()[Gpu(LOCAL, "7")] == ["alice"]
    assert allocator.assign("bob", 1).ids == ("0",)


def test_random_sequences_keep_invariants():
    for hosts, policy in itertools.product(({LOCAL: 3}, {"a": 2, "b": 2, "c": 1}), ("exclusive", "shared")):
        allocator = Allocator(gpus(hosts), Gpus(policy=policy, per_gpu=3))
        for step in range(200):
            holder = f"s{(step * 7) % 11}"
            if step % 3 == 2:
                allocator.release(holder)
            else:
                try:
                    allocator.assign(holder, 1 + step % 2)
                except NoGpuFree:
                    pass
            check_invariants(allocator)


def test_corrupt_state_file_is_a_clear_error(tmp_path):
    path = tmp_path / "gpus.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a GPU assignment file"):
        Allocator(gpus({LOCAL: 1}), exclusive(), path)


def test_labels_round_trip():
    assignment = Assignment("node-b", ("0", "3"))
    assert Assignment.from_labels(assignment.labels()) == assignment
    assert Assignment.from_labels({"org.d2lhub.user": "x"}) is None
    assert assignment.describe() == "GPUs 0, 3 on node-b"
    assert Assignment(LOCAL, ("2",)).describe() == "GPU 2"


def test_inventory_prefers_configured_devices_over_discovered():
    configured = Gpus(devices={LOCAL: ("0", "1")})
    assert inventory(configured, {LOCAL: ["5"]}) == [Gpu(LOCAL, "0"), Gpu(LOCAL, "1")]
    assert inventory(Gpus(), {"b": ["1"], "a": ["0"]}) == [Gpu("a", "0"), Gpu("b", "1")]
    assert inventory(Gpus(policy="none", devices={LOCAL: ("0",)}), {}) == []


# The queue (when_full: queue) -------------------------------------------------


def one_gpu_queue() -> Queue:
    return Queue(Allocator(gpus({LOCAL: 1}), exclusive()), poll=0.01)


def test_queue_hands_a_free_gpu_out_at_once():
    queue = one_gpu_queue()
    told = []
    assignment = asyncio.run(queue.assign("ann", 1, timeout=1, report=told.append))
    assert assignment == Assignment(LOCAL, ("0",)) and told == [] and queue.waiting == []


def test_queue_serves_first_come_first_served_and_says_how_many_are_ahead():
    queue = one_gpu_queue()
    queue.allocator.assign("ann", 1)
    places: dict[str, list[int]] = {"bob": [], "cid": []}
    served = []

    async def wait(name):
        assignment = await queue.assign(name, 1, timeout=5, report=places[name].append)
        served.append(name)
        return assignment

    async def scenario():
        bob = asyncio.create_task(wait("bob"))
        await asyncio.sleep(0.05)
        cid = asyncio.create_task(wait("cid"))
        await asyncio.sleep(0.05)
        assert queue.waiting == ["bob", "cid"]
        queue.allocator.release("ann")
        assert await bob == Assignment(LOCAL, ("0",))
        await asyncio.sleep(0.05)
        assert not cid.done()  # the one GPU went to bob; cid is now first
        queue.allocator.release("bob")
        await cid

    asyncio.run(scenario())
    assert served == ["bob", "cid"]
    assert places == {"bob": [0], "cid": [1, 0]}
    assert [waiting_message(n) for n in places["cid"]] == ["Waiting for a GPU: 1 ahead of you", "Waiting for a GPU: you are next"]
    assert queue.waiting == []


def test_a_newcomer_does_not_overtake_the_queue():
    queue = Queue(Allocator(gpus({LOCAL: 2}), exclusive()), poll=0.05)
    queue.allocator.assign("ann", 2)

    async def scenario():
        big = asyncio.create_task(queue.assign("big", 2, timeout=5))  # needs both GPUs
        await asyncio.sleep(0.02)
        queue.allocator.release("ann")
        queue.allocator.assign("sneak", 1)  # someone took one in between, outside the queue
        small = asyncio.create_task(queue.assign("small", 1, timeout=0.2))
        with pytest.raises(NoGpuFree, match="1 still ahead of you"):
            await small  # a GPU is free, but big waits first
        queue.allocator.release("sneak")
        assert await big == Assignment(LOCAL, ("0", "1"))

    asyncio.run(scenario())


def test_queue_gives_up_after_its_timeout_with_a_clear_reason():
    queue = one_gpu_queue()
    queue.allocator.assign("ann", 1)
    told = []
    with pytest.raises(NoGpuFree, match=r"No GPU became free within 0.1 s of waiting \(you were next in the queue\)\. Try again later"):
        asyncio.run(queue.assign("bob", 1, timeout=0.1, report=told.append))
    assert told == [0] and queue.waiting == [] and "bob" not in queue.allocator.assignments


def test_queue_refuses_at_once_what_could_never_fit():
    queue = one_gpu_queue()
    with pytest.raises(NoGpuFree, match="2 free on one host are needed"):
        asyncio.run(queue.assign("ann", 2, timeout=5))
    empty = Queue(Allocator([], exclusive()), poll=0.01)
    with pytest.raises(NoGpuFree, match="no GPUs to hand out"):
        asyncio.run(empty.assign("ann", 1, timeout=5))


def test_a_cancelled_wait_leaves_the_queue():
    queue = one_gpu_queue()
    queue.allocator.assign("ann", 1)

    async def scenario():
        waiting = asyncio.create_task(queue.assign("bob", 1, timeout=5))
        await asyncio.sleep(0.03)
        assert queue.waiting == ["bob"]
        waiting.cancel()  # the student cancelled the spawn
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert queue.waiting == []

    asyncio.run(scenario())


def test_can_ever_fit_counts_per_host():
    allocator = Allocator(gpus({"a": 2, "b": 1}), exclusive())
    assert allocator.can_ever_fit(2) and not allocator.can_ever_fit(3)
    assert not allocator.can_ever_fit(2, hosts=["b"])
    assert not Allocator(gpus({"a": 2}), Gpus(policy="none")).can_ever_fit(1)
