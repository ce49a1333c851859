"""The uid registry (d2lhub.identity): a uid per name, handed out once, never reused, safe under
concurrent spawns (threads) and concurrent processes (the hub and the CLI)."""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from d2lhub import identity, labels

FIRST = 20001


def fresh(tmp_path) -> identity.Registry:
    return identity.Registry(tmp_path / "uids.json", FIRST)


def test_a_name_keeps_its_uid_and_new_names_never_get_an_old_one(tmp_path):
    registry = fresh(tmp_path)
    first = registry.uid_for("ada")
    second = registry.uid_for("bo")
    assert (first, second) == (FIRST, FIRST + 1)
    # A student deleted and added back, or asked about by another process: the same uid.
    assert fresh(tmp_path).uid_for("ada") == first
    # Their volume claiming another uid changes nothing: the registry's word stands.
    assert registry.uid_for("ada", recorded=FIRST + 50) == first
    assert registry.uid_for("cy") == FIRST + 2
    assert sorted(registry.read().values()) == [FIRST, FIRST + 1, FIRST + 2]


def test_recorded_uid_is_adopted_only_when_free_and_in_range(tmp_path):
    registry = fresh(tmp_path)
    assert registry.uid_for("legacy", recorded=FIRST + 9) == FIRST + 9
    # A new name is handed a uid above every uid ever seen, never one below an adopted one.
    assert registry.uid_for("new") == FIRST + 10
    # A uid another name holds is never shared, nor one at or below uid_base.
    assert registry.uid_for("twin", recorded=FIRST + 9) == FIRST + 11
    assert registry.uid_for("low", recorded=FIRST - 1) == FIRST + 12
    assert registry.uid_for("root", recorded=0) == FIRST + 13


def test_the_high_water_mark_survives_an_edited_file(tmp_path):
    """`next` is kept: even if the highest entry vanished from the file, its uid is not handed out again."""
    registry = fresh(tmp_path)
    for name in ("a", "b", "c"):
        registry.uid_for(name)
    data = json.loads(registry.path.read_text())
    del data["uids"]["c"]
    registry.path.write_text(json.dumps(data))
    assert registry.uid_for("d") == FIRST + 3


def test_adopt_gives_a_shared_uid_to_the_first_claim(tmp_path):
    uids = fresh(tmp_path).adopt([("older", FIRST + 4), ("younger", FIRST + 4), ("unlabelled", None)])
    assert uids == {"older": FIRST + 4, "younger": FIRST + 5, "unlabelled": FIRST + 6}


def test_threads_allocating_at_once_get_distinct_uids(tmp_path):
    registry = fresh(tmp_path)
    names = [f"student{i}" for i in range(60)] * 2  # every name asked for twice, at once
    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(registry.uid_for, names))
    by_name = dict(zip(names, got))
    assert all(by_name[name] == uid for name, uid in zip(names, got)), "a name got two uids"
    assert sorted(set(got)) == list(range(FIRST, FIRST + 60))
    assert fresh(tmp_path).read() == by_name


def _allocate(path: str, prefix: str, queue) -> None:
    registry = identity.Registry(__import__("pathlib").Path(path), FIRST)
    with ThreadPoolExecutor(8) as pool:
        queue.put(list(pool.map(lambda i: (f"{prefix}{i}", registry.uid_for(f"{prefix}{i}")), range(25))))


def test_processes_allocating_at_once_get_distinct_uids(tmp_path):
    """The hub and a `d2lhub` command share the file: the lock orders them."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    workers = [context.Process(target=_allocate, args=(str(tmp_path / "uids.json"), p, queue)) for p in "abc"]
    for worker in workers:
        worker.start()
    pairs = [pair for _ in workers for pair in queue.get(timeout=60)]
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    uids = [uid for _, uid in pairs]
    assert len(set(uids)) == 75
    assert fresh(tmp_path).read() == dict(pairs)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "not a uid registry"),
        ('{"uids": {"a": 20001}}', "not a uid registry"),
        ('{"next": 20003, "uids": {"a": "x"}}', "the uid of a is not a positive whole number"),
        ('{"next": 20003, "uids": {"a": 20001, "b": 20001}}', "a and b share uid 20001"),
    ],
)
def test_a_bad_registry_is_refused_by_name_and_left_as_it_is(tmp_path, text, problem):
    registry = fresh(tmp_path)
    registry.path.write_text(text)
    with pytest.raises(identity.IdentityError, match=problem) as refused:
        registry.uid_for("new")
    assert str(registry.path) in str(refused.value)
    assert registry.path.read_text() == text


def test_recorded_uids_come_from_home_volume_labels_oldest_first():
    def volume(name, created, **found):
        return SimpleNamespace(name=name, attrs={"CreatedAt": created, "Labels": {labels.INSTANCE: "x", **found}})

    volumes = [
        volume("x-home-b", "2026-02-01T00:00:00Z", **{labels.USER: "b", labels.UID: "20001"}),
        volume("x-home-a", "2026-01-01T00:00:00Z", **{labels.USER: "a", labels.UID: "20001"}),
        volume("x-home-c", "2026-03-01T00:00:00Z", **{labels.USER: "c"}),
        volume("x-data", "2026-01-01T00:00:00Z", **{labels.ROLE: "data"}),
    ]
    client = SimpleNamespace(volumes=SimpleNamespace(list=lambda filters: volumes))
    assert identity.recorded_uids(client, "x") == [("a", 20001), ("b", 20001), ("c", None)]
