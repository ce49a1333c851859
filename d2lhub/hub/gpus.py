"""GPU inventory and allocation: which student's server holds which GPU.

Docker's `count=1` hands every container the same first GPU, so the hub must pick
explicit device ids itself and remember them. The allocator is pure logic over an
inventory and a policy; its assignments live in a JSON file in state_dir (replaced
atomically) so a hub restart neither hands a busy GPU out twice nor forgets one. The
running containers' labels are the final word: `reconcile` frees what a container
that died while the hub was down held, and adopts what a lost file forgot.

With `when_full: queue`, a spawn that finds every GPU taken waits in a `Queue`, first come
first served, and is told how many are ahead of it, until a GPU frees or its time runs out.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from d2lhub.config import Gpus

LOCAL = "local"  # the host name of the single Docker host (spawner.kind: docker)
HOST_LABEL = "org.d2lhub.gpu-host"
IDS_LABEL = "org.d2lhub.gpus"


class NoGpuFree(Exception):
    """Every GPU a profile could use is taken; the message is what the student reads."""


@dataclass(frozen=True, order=True)
class Gpu:
    host: str
    id: str


@dataclass(frozen=True)
class Assignment:
    host: str
    ids: tuple[str, ...]

    def describe(self) -> str:
        gpus = ", ".join(self.ids)
        label = "GPU" if len(self.ids) == 1 else "GPUs"
        return f"{label} {gpus}" if self.host == LOCAL else f"{label} {gpus} on {self.host}"

    def labels(self) -> dict[str, str]:
        return {HOST_LABEL: self.host, IDS_LABEL: ",".join(self.ids)}

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> Assignment | None:
        ids = labels.get(IDS_LABEL, "")
        if not ids:
            return None
        return cls(labels.get(HOST_LABEL, LOCAL), tuple(ids.split(",")))


def discover_local() -> tuple[str, ...]:
    """The GPU indices NVML sees on this host; none where no NVIDIA driver is installed."""
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return ()
    try:
        return tuple(str(index) for index in range(pynvml.nvmlDeviceGetCount()))
    finally:
        pynvml.nvmlShutdown()


def inventory(settings: Gpus, discovered: Mapping[str, Iterable[str]]) -> list[Gpu]:
    """The configured devices, or else the discovered ones, as a sorted list."""
    if settings.policy == "none":
        return []
    source = settings.devices or discovered
    return sorted(Gpu(host, str(gpu_id)) for host, ids in source.items() for gpu_id in ids)


class Allocator:
    def __init__(self, gpus: Iterable[Gpu], settings: Gpus, path: Path | None = None):
        self.gpus = sorted(set(gpus))
        self.settings = settings
        self.path = path
        self.assignments: dict[str, Assignment] = {}
        if path is not None and path.exists():
            self.assignments = self._read(path)

    @property
    def capacity(self) -> int:
        """Students one GPU may serve at once."""
        return self.settings.students_per_gpu

    @staticmethod
    def _read(path: Path) -> dict[str, Assignment]:
        try:
            data = json.loads(path.read_text())
            return {holder: Assignment(a["host"], tuple(a["ids"])) for holder, a in data["assignments"].items()}
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a GPU assignment file ({exc}); move it away to rebuild it from containers") from None

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"assignments": {h: {"host": a.host, "ids": list(a.ids)} for h, a in sorted(self.assignments.items())}}
        fd, partial = tempfile.mkstemp(dir=self.path.parent, prefix=".gpus-", suffix=".json")
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, self.path)

    def load(self) -> dict[Gpu, list[str]]:
        """Holders of each GPU in the inventory (and of any no longer in it)."""
        usage: dict[Gpu, list[str]] = {gpu: [] for gpu in self.gpus}
        for holder, assignment in sorted(self.assignments.items()):
            for gpu_id in assignment.ids:
                usage.setdefault(Gpu(assignment.host, gpu_id), []).append(holder)
        return usage

    def assign(self, holder: str, count: int, hosts: Iterable[str] | None = None) -> Assignment:
        """Give `holder` `count` GPUs on one host, least used first; the same ones again if it holds some."""
        if count < 1:
            raise ValueError(f"a GPU assignment needs count >= 1, got {count}")
        if holder in self.assignments:
            return self.assignments[holder]
        if not self.gpus or self.capacity == 0:
            raise NoGpuFree("This hub has no GPUs to hand out; choose a CPU server.")
        allowed = set(hosts) if hosts is not None else None
        usage = self.load()
        by_host: dict[str, list[tuple[int, Gpu]]] = {}
        for gpu in self.gpus:
            used = len(usage[gpu])
            if used < self.capacity and (allowed is None or gpu.host in allowed):
                by_host.setdefault(gpu.host, []).append((used, gpu))
        fitting = sorted(
            (sum(self.capacity - used for used, _ in free), host, sorted(free))
            for host, free in by_host.items()
            if len(free) >= count
        )
        if not fitting:
            busy = sum(1 for gpu in self.gpus if len(usage[gpu]) >= self.capacity)
            raise NoGpuFree(
                f"All GPUs are taken ({busy} of {len(self.gpus)} in use, {self._policy_words()}); "
                f"{count} free on one host are needed. Try again later or choose a CPU server."
            )
        _, host, free = fitting[-1]  # the host with the most room left spreads students out
        assignment = Assignment(host, tuple(gpu.id for _, gpu in free[:count]))
        self.assignments[holder] = assignment
        self.save()
        return assignment

    def can_ever_fit(self, count: int, hosts: Iterable[str] | None = None) -> bool:
        """Whether `count` GPUs on one host could ever be free for one holder (waiting makes sense)."""
        if self.capacity == 0:
            return False
        allowed = set(hosts) if hosts is not None else None
        per_host: dict[str, int] = {}
        for gpu in self.gpus:
            if allowed is None or gpu.host in allowed:
                per_host[gpu.host] = per_host.get(gpu.host, 0) + 1
        return any(n >= count for n in per_host.values())

    def _policy_words(self) -> str:
        if self.settings.policy == "shared":
            return f"up to {self.capacity} students per GPU"
        return "one student per GPU"

    def release(self, holder: str) -> Assignment | None:
        """Free what `holder` holds; releasing twice is harmless."""
        assignment = self.assignments.pop(holder, None)
        if assignment is not None:
            self.save()
        return assignment

    def reconcile(self, live: Mapping[str, Assignment]) -> tuple[list[str], list[str]]:
        """Make the assignments those of the running containers; returns (freed, adopted) holders."""
        freed = sorted(h for h in self.assignments if h not in live)
        adopted = sorted(h for h, a in live.items() if self.assignments.get(h) != a)
        self.assignments = dict(live)
        if freed or adopted:
            self.save()
        return freed, adopted


def waiting_message(ahead: int) -> str:
    """What a queued student reads on the spawn page."""
    if ahead == 0:
        return "Waiting for a GPU: you are next"
    return f"Waiting for a GPU: {ahead} ahead of you"


class Queue:
    """Spawns waiting for a GPU (`when_full: queue`), served first come first served.

    Only the head of the queue may take a GPU, so a student who arrives later never
    overtakes one who waits. The hub runs one event loop, so a list is the whole state;
    waiters poll the allocator (cheap, in memory) instead of being woken, which also
    notices GPUs freed by a reconcile.
    """

    def __init__(self, allocator: Allocator, poll: float = 1.0):
        self.allocator = allocator
        self.poll = poll
        self.waiting: list[str] = []

    async def assign(
        self,
        holder: str,
        count: int,
        timeout: float,
        hosts: Iterable[str] | None = None,
        report: Callable[[int], None] = lambda ahead: None,
    ) -> Assignment:
        """An assignment for `holder`, waiting up to `timeout` seconds; `report(ahead)` on each change of place."""
        hosts = tuple(hosts) if hosts is not None else None
        if not self.waiting or holder in self.allocator.assignments:
            try:
                return self.allocator.assign(holder, count, hosts)
            except NoGpuFree:
                if not self.allocator.can_ever_fit(count, hosts):
                    raise
        elif not self.allocator.can_ever_fit(count, hosts):
            return self.allocator.assign(holder, count, hosts)  # raises the allocator's own reason
        if holder in self.waiting:
            raise NoGpuFree(f"{holder} is already waiting for a GPU.")
        self.waiting.append(holder)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        told = None
        try:
            while True:
                ahead = self.waiting.index(holder)
                if ahead == 0:
                    try:
                        return self.allocator.assign(holder, count, hosts)
                    except NoGpuFree:
                        pass
                if ahead != told:
                    report(ahead)
                    told = ahead
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise NoGpuFree(
                        f"No GPU became free within {timeout:g} s of waiting "
                        f"({self._behind(ahead)}). Try again later or choose a CPU server."
                    )
                await asyncio.sleep(min(self.poll, remaining))
        finally:
            self.waiting.remove(holder)

    @staticmethod
    def _behind(ahead: int) -> str:
        return "you were next in the queue" if ahead == 0 else f"{ahead} still ahead of you in the queue"
