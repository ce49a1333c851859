"""The file system that keeps students' disk limits: btrfs, a subvolume per home, a qgroup limit each.

`state_dir/homes` holds it. When the host mounts a btrfs there it is used as is; otherwise it is
made in a sparse file (`state_dir/homes.btrfs`, `hub.homes_size`) and loop-mounted. Quotas are
switched on, and the kernel then answers a write past a subvolume's limit with EDQUOT (`Disk quota
exceeded`) in the writer's own process: no other home, nor the host's disk, notices.
The submissions folder (the exchange's inbound) is a subvolume of its own, bind-mounted where
nbgrader looks for it, with `grading.inbound_size` as its limit.

Base layer: the hub (spawns), `make up` (the bootstrap) and the `d2lhub` commands use it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from d2lhub import state
from d2lhub.config import Classroom, Profile
from d2lhub.sizes import format_size, show_size
from d2lhub.studentimage import STUDENT_GID

MARKER = ".d2lhub"  # keeps a new home non-empty: Docker copies the image's folder over an empty volume
SMALLEST = 16 * 2**20  # btrfs needs a few MB of metadata per subvolume; a smaller limit would fail at once


class QuotaError(Exception):
    """The host cannot keep the disk limits classroom.yaml asks for; the message says why and what to do."""


def enabled(classroom: Classroom) -> bool:
    """Homes live on the quota file system when any profile has a home limit."""
    return any(classroom.limits_for(p).home for p in classroom.profiles)


def run(*command: str) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise QuotaError(f"{command[0]} is missing: install btrfs-progs (apt-get install btrfs-progs)") from None
    if done.returncode != 0:
        raise QuotaError(f"`{' '.join(command)}` failed: {(done.stderr or done.stdout).strip()[-400:]}")
    return done.stdout


def mounted_type(path: Path) -> str | None:
    """The file system type mounted exactly at `path`, or None (from /proc/self/mountinfo)."""
    target = str(path.resolve())
    found = None
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" ")
        mount_point = fields[4].replace("\\040", " ")
        if mount_point == target:
            found = fields[fields.index("-") + 1]  # the last mount at a path is the one seen
    return found


def host_problem() -> str | None:
    """Why this host cannot make a btrfs with quotas, or None."""
    if os.geteuid() != 0:
        return "homes with a size limit need root (btrfs subvolumes and loop mounts)"
    if "btrfs" not in Path("/proc/filesystems").read_text():
        subprocess.run(["modprobe", "btrfs"], capture_output=True)
        if "btrfs" not in Path("/proc/filesystems").read_text():
            return "this kernel has no btrfs (modprobe btrfs failed)"
    missing = [tool for tool in ("mkfs.btrfs", "btrfs", "losetup") if shutil.which(tool) is None]
    return f"{', '.join(missing)} missing: apt-get install btrfs-progs" if missing else None


def check_sizes(classroom: Classroom) -> None:
    """Refuse limits the file system cannot keep: larger than it, smaller than btrfs can hold."""
    size = classroom.hub.homes_size
    for profile in classroom.profiles:
        home = classroom.limits_for(profile).home
        where = "limits.home" if profile.limits is None else f"profiles.{profile.name}.limits.home"
        if home and home > size:
            raise QuotaError(f"{where}: {show_size(home)} is more than the whole homes file system "
                             f"(hub.homes_size: {show_size(size)}); raise hub.homes_size or lower {where}")
        if home and home < SMALLEST:
            raise QuotaError(f"{where}: {show_size(home)} is below what btrfs can enforce ({show_size(SMALLEST)})")
    if classroom.grading.inbound_size > size:
        raise QuotaError(f"grading.inbound_size: {show_size(classroom.grading.inbound_size)} is more than "
                         f"hub.homes_size ({show_size(size)})")


def make_image(classroom: Classroom, say) -> Path:
    """The sparse file of the homes file system, made once: it must fit in the state folder's disk."""
    image, size = state.homes_image(classroom), classroom.hub.homes_size
    held = image.stat().st_blocks * 512 if image.exists() else 0
    image.parent.mkdir(parents=True, exist_ok=True)
    room = shutil.disk_usage(image.parent).free + held - classroom.hub.min_free_space
    if size > room:
        raise QuotaError(f"hub.homes_size: {show_size(size)} does not fit in {image.parent} ({format_size(room)} "
                         "free beside hub.min_free_space): the homes could fill the host's disk; lower it or free space")
    if not image.exists():
        say(f"making the homes file system: btrfs in {image} ({show_size(size)}, sparse)")
        partial = image.with_name(image.name + ".partial")
        with open(partial, "wb") as handle:
            handle.truncate(size)
        os.chmod(partial, 0o600)
        run("mkfs.btrfs", "-q", "-f", str(partial))
        partial.replace(image)
    return image


def ensure(classroom: Classroom, inbounds: dict[str, Path], say=lambda _: None) -> Path | None:
    """Mount the homes file system with quotas on, and a submissions subvolume at each inbound (offering id ->
    its exchange inbound), each with the limit; None when no profile has a home limit. Quick when all is
    there (every hub start runs it)."""
    if not enabled(classroom):
        return None
    check_sizes(classroom)
    root = state.homes_dir(classroom)
    kind = mounted_type(root)
    if kind is None:
        problem = host_problem()
        if problem:
            raise QuotaError(f"limits.home cannot be kept on this host: {problem}; or set limits.home: null")
        image = make_image(classroom, say)
        root.mkdir(parents=True, exist_ok=True)
        run("mount", "-o", "loop,commit=5", str(image), str(root))
    elif kind != "btrfs":
        raise QuotaError(f"limits.home needs btrfs at {root}, but a {kind} file system is mounted there "
                         "(docs/admin.md, Disk limits); unmount it, or set limits.home: null")
    os.chmod(root, 0o700)
    if "not enabled" in subprocess.run(["btrfs", "qgroup", "show", str(root)], capture_output=True, text=True).stderr:
        say(f"turning btrfs quotas on in {root}")
        run("btrfs", "quota", "enable", str(root))
    for offering, inbound in inbounds.items():
        submissions = subvolume(root / f".inbound-{offering}")
        set_limit(submissions, classroom.grading.inbound_size)
        inbound.mkdir(parents=True, exist_ok=True)
        if mounted_type(inbound) is None:
            for entry in inbound.iterdir():  # submissions made before limits were on move in, not hide under the mount
                shutil.move(entry, submissions / entry.name)
            run("mount", "--bind", str(submissions), str(inbound))
    return root


def unmount(classroom: Classroom, inbounds: dict[str, Path]) -> None:
    """Undo `ensure` (tests, a move): the submissions binds, then the file system (its loop device goes with it)."""
    for path in (*inbounds.values(), state.homes_dir(classroom)):
        while mounted_type(path):
            run("umount", str(path))


def subvolume(path: Path) -> Path:
    if not path.exists():
        run("btrfs", "subvolume", "create", str(path))
    return path


def home_path(classroom: Classroom, volume: str) -> Path:
    """Where the home volume `volume` keeps its files: a subvolume of the same name."""
    return state.homes_dir(classroom) / volume


def make_home(path: Path, uid: int) -> bool:
    """The student's subvolume, theirs alone (mode 700, with the marker); True when it was new."""
    if path.exists():
        return False
    claim(subvolume(path), uid)
    return True


def claim(home: Path, uid: int) -> None:
    """Make a home folder the student's alone (mode 700), with the marker that keeps it non-empty."""
    marker = home / MARKER
    marker.mkdir(exist_ok=True)
    for owned in (home, marker):
        os.chown(owned, uid, STUDENT_GID)
    home.chmod(0o700)


def set_limit(path: Path, limit: int | None) -> None:
    run("btrfs", "qgroup", "limit", str(limit) if limit else "none", str(path))


def usage(path: Path) -> tuple[int, int | None]:
    """(bytes used, limit or None) of a subvolume, as its qgroup counts them."""
    lines = run("btrfs", "qgroup", "show", "-reF", "--raw", str(path)).splitlines()
    for line in lines:
        fields = line.split()
        if fields and fields[0].startswith("0/"):
            return int(fields[1]), None if fields[3] == "none" else int(fields[3])
    raise QuotaError(f"no qgroup found for {path}")


def overrides(classroom: Classroom) -> dict[str, int]:
    try:
        return json.loads(state.quotas_file(classroom).read_text())
    except FileNotFoundError:
        return {}


def set_override(classroom: Classroom, user: str, limit: int) -> None:
    chosen = {**overrides(classroom), user: limit}
    state.write_private(state.quotas_file(classroom), json.dumps(chosen, indent=1, sort_keys=True))


def limit_for(classroom: Classroom, user: str, profile: Profile) -> int | None:
    """A student's home limit: what `d2lhub quota` set for them, else their profile's."""
    return overrides(classroom).get(user) or classroom.limits_for(profile).home
