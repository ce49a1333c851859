"""What one student server, and one grading container, may use: the `limits` and `grading` keys of
classroom.yaml (d2lhub.config builds the whole schema from these), and the home limit's default.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from d2lhub.deadlines_config import Late
from d2lhub.sizes import ByteSize, parse_size


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(Strict):
    cpu: float = Field(1.0, gt=0, description="CPU cores per student server")
    memory: ByteSize = Field(parse_size("3G"), description="memory per student server")
    pids: int = Field(1024, ge=64, description="processes per student server (stops fork bombs)")
    home: ByteSize | None = Field(
        parse_size("5G"), description="size limit of each student's home, kept by the kernel (a btrfs "
        "qgroup): writing past it gives `Disk quota exceeded`; null: no limit. Unset, it is null where homes "
        "are not on this host (`spawner.kind: swarm`, another volume driver, volume_options)"
    )
    tmp: ByteSize = Field(parse_size("256M"), description="size of `/tmp` (a tmpfs: it counts as memory); "
                          "the rest of the container's files are read-only")


class Grading(Strict):
    """Caps of the throwaway containers that run student submissions at autograde."""

    jobs: int = Field(0, ge=0, le=64, description="submissions executed at once; 0 means one per CPU core")
    cell_timeout: int = Field(60, ge=1, description="seconds one cell may run before it is interrupted")
    wall_clock: int = Field(600, ge=10, description="seconds a whole submission may run before its container is killed")
    memory: ByteSize = Field(parse_size("1G"), description="memory of one grading container")
    cpu: float = Field(1.0, gt=0, description="CPU cores of one grading container")
    pids: int = Field(128, ge=32, description="processes of one grading container (stops fork bombs)")
    output_limit: ByteSize = Field(parse_size("1M"), description="notebook output kept per submission; the rest is dropped")
    max_submission: ByteSize = Field(parse_size("100M"), description="a submission larger than this is "
                                     "refused at submit, with its size in the message")
    inbound_size: ByteSize = Field(parse_size("2G"), description="limit of the submissions folder (the "
                                   "exchange's inbound, a btrfs qgroup) all submissions together")
    late: Late = Field(Late(), description="what a submission after its due date (or the student's extension) loses")


def homes_here(kind: str, volume_driver: str, volume_options: object) -> bool:
    """Whether students' homes are on this host's disk, where a btrfs can limit them."""
    return kind == "docker" and volume_driver == "local" and not volume_options


def home_default_off_this_host(data: object) -> object:
    """Raw classroom.yaml, with `limits.home` off where not written and homes are not on this host's
    btrfs (a Swarm, another volume driver or options such as NFS): the default 5G holds where it can be kept, and a limit
    the admin wrote there is refused (d2lhub.config)."""
    spawner = data.get("spawner") if isinstance(data, dict) else None
    spawner = spawner if isinstance(spawner, dict) else {}
    if not isinstance(data, dict) or homes_here(spawner.get("kind", "docker"), spawner.get("volume_driver", "local"),
                                               spawner.get("volume_options")):
        return data

    def off(limits: object) -> object:
        return {"home": None, **limits} if isinstance(limits, dict) else limits

    profiles = data.get("profiles")
    if isinstance(profiles, list):
        profiles = [{**p, "limits": off(p["limits"])} if isinstance(p, dict) and p.get("limits") else p for p in profiles]
    return {**data, "limits": off(data.get("limits") or {}), **({"profiles": profiles} if profiles else {})}
