"""Disk limits that hold, tried for real: homes as btrfs subvolumes with qgroup limits on a loop file
system the hub makes (256M here), a read-only container root with a sized /tmp, and submissions
capped at submit and by the inbound's own qgroup.

Each abuse ends at its own limit with a clear error in the abuser's kernel, while a neighbour saves,
another student's server starts and the hub answers.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest
import requests
from harness import launched_hub, roster_student
from test_cli import d2lhub

from d2lhub import homefs, labels, state
from d2lhub.grading import layout
from d2lhub.hub import homes

pytestmark = pytest.mark.integration
MB = 2**20

# Writes 1 MB at a time into PATH until the kernel refuses, then keeps trying for SECONDS (the
# home stays full while the neighbours work); prints what the kernel said.
FILL = """
import errno, json, os, time
path, written, refusals, error = {path!r}, 0, 0, None
with open(path, "ab", buffering=0) as out:
    try:
        while True:
            out.write(b"x" * 2**20)
            written += 2**20
    except OSError as failure:
        error = {{"errno": failure.errno, "strerror": failure.strerror}}
deadline = time.monotonic() + {seconds}
while time.monotonic() < deadline:
    try:
        with open(path, "ab", buffering=0) as out:
            out.write(b"x" * 2**20)
    except OSError as failure:
        refusals += failure.errno == errno.EDQUOT
    time.sleep(0.2)
print(json.dumps({{"written": written, "error": error, "refusals": refusals}}))
"""

TRY_WRITES = """
import json, os
said = {{}}
for path, size in {targets!r}:
    try:
        with open(path, "wb") as out:
            for _ in range(size):
                out.write(b"x" * 2**20)
        said[path] = "written"
    except OSError as failure:
        said[path] = failure.strerror
    finally:
        try:
            os.remove(path)
        except OSError:
            pass
print(json.dumps(said))
"""


@pytest.fixture(scope="module")
def quota_hub(tmp_path_factory, docker_client):
    yield from launched_hub(tmp_path_factory.mktemp("quota"), docker_client, limits={"tmp": "32M"})


@pytest.fixture(scope="module")
def pair(quota_hub):
    students = {name: quota_hub.browser(name) for name in ("student1", "student2")}
    for browser in students.values():
        browser.spawn()
        assert browser.open_server().status_code == 200
    return students


def home_of(hub, docker_client, user: str):
    volume = docker_client.volumes.get(f"{hub.classroom.spawner.instance}-home-{user}")
    return volume, homefs.home_path(hub.classroom, volume.name)


def test_homes_are_limited_subvolumes_bound_as_labelled_volumes(quota_hub, pair, docker_client):
    root = state.homes_dir(quota_hub.classroom)
    assert homefs.mounted_type(root) == "btrfs"
    assert homefs.mounted_type(layout.inbound_dir(quota_hub.classroom)) == "btrfs"
    volume, path = home_of(quota_hub, docker_client, "student1")
    assert volume.attrs["Options"] == {"type": "none", "o": "bind", "device": str(path)}
    assert volume.attrs["Labels"][labels.USER] == "student1"  # collect trusts these
    assert int(volume.attrs["Labels"][labels.UID]) == path.stat().st_uid
    assert homefs.usage(path)[1] == 64 * MB
    assert homefs.usage(layout.inbound_dir(quota_hub.classroom))[1] == 32 * MB
    container = docker_client.containers.get(f"{quota_hub.classroom.spawner.instance}-student1")
    assert container.attrs["HostConfig"]["ReadonlyRootfs"] is True
    assert container.attrs["HostConfig"]["Tmpfs"]["/tmp"] == f"size={32 * MB},mode=1777"


def test_full_home_is_its_owners_problem_only(quota_hub, pair, docker_client, tmp_path):
    full, neighbour = pair["student1"], pair["student2"]
    outcome = {}
    full.open_server()
    kernel = full.server_api("POST", "/kernels", json={"name": "python3"}).json()["id"]  # theirs, kept open
    filling = threading.Thread(target=lambda: outcome.update(result=full.execute(
        FILL.format(path="/home/jovyan/fill.bin", seconds=25), timeout=180, shutdown=False, kernel_id=kernel)))
    filling.start()
    _, path = home_of(quota_hub, docker_client, "student1")
    deadline = time.monotonic() + 60
    while homefs.usage(path)[0] < 60 * MB and time.monotonic() < deadline:
        time.sleep(0.5)
    assert homefs.usage(path)[0] >= 60 * MB, "student1's home did not fill"

    # While student1's kernel keeps hitting its limit: a neighbour saves a notebook, a third
    # student's server starts, the hub answers.
    notebook = {"cells": [{"cell_type": "code", "source": "print(1)", "metadata": {}, "outputs": [],
                           "execution_count": None}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    saved = neighbour.server_api("PUT", "/contents/saved.ipynb", json={"type": "notebook", "content": notebook})
    assert saved.status_code in (200, 201), saved.text
    third = roster_student(quota_hub, tmp_path, "student3")
    assert third.spawn() < 60
    assert third.open_server().status_code == 200
    assert third.execute("print(6 * 7)").stdout.strip() == "42"
    assert requests.get(f"{quota_hub.url}/hub/health", timeout=10).status_code == 200
    assert filling.is_alive(), "the home should still be full while the others work"

    filling.join(timeout=180)
    result = outcome["result"]
    assert result.error is None, result.error
    said = json.loads(result.stdout)
    assert said["error"] == {"errno": 122, "strerror": "Disk quota exceeded"}, said
    assert 56 * MB <= said["written"] <= 64 * MB
    assert said["refusals"] > 10
    assert neighbour.server_api("GET", "/contents/saved.ipynb").status_code == 200

    # `d2lhub status` shows it; in the same kernel, the full student deletes and writes again.
    shown = " ".join(d2lhub("status", "--config", str(quota_hub.path)).stdout.split())
    assert "64M / 64M" in shown or "63." in shown, shown
    again = full.execute(
        "import os\nos.remove('/home/jovyan/fill.bin')\n"
        "open('/home/jovyan/after.bin', 'wb').write(b'x' * 16 * 2**20)\nprint('written again')", kernel_id=kernel
    )
    assert again.stdout.strip() == "written again", (again.stdout, again.error)


def test_quota_command_raises_one_students_limit_at_once(quota_hub, pair, docker_client):
    _, path = home_of(quota_hub, docker_client, "student2")
    result = d2lhub("quota", "student2", "96M", "--config", str(quota_hub.path))
    assert "student2's home may now hold 96M" in result.stdout
    assert homefs.usage(path)[1] == 96 * MB
    wrote = pair["student2"].execute(TRY_WRITES.format(targets=[("/home/jovyan/big.bin", 80)]))
    assert json.loads(wrote.stdout) == {"/home/jovyan/big.bin": "written"}, (wrote.stdout, wrote.error)
    refused = d2lhub("quota", "nobody-here", "96M", "--config", str(quota_hub.path), check=False)
    assert refused.returncode == 2 and "NAME" in refused.stderr and "nobody-here" in refused.stderr
    bad = d2lhub("quota", "student2", "lots", "--config", str(quota_hub.path), check=False)
    assert bad.returncode == 2 and "SIZE" in bad.stderr


def test_tmp_and_the_container_layer_end_at_their_limits(quota_hub, pair):
    targets = [("/tmp/big.bin", 64), ("/var/tmp/x", 1), ("/opt/x", 1), ("/etc/x", 1), ("/usr/local/x", 1),
               ("/home/jovyan/.local/share/jupyter/x", 1)]
    said = json.loads(pair["student2"].execute(TRY_WRITES.format(targets=targets)).stdout)
    assert said == {
        "/tmp/big.bin": "No space left on device",  # a 32M tmpfs
        "/var/tmp/x": "Read-only file system",
        "/opt/x": "Read-only file system",
        "/etc/x": "Read-only file system",
        "/usr/local/x": "Read-only file system",
        "/home/jovyan/.local/share/jupyter/x": "written",  # Jupyter's own files live in the home
    }


def release_by_hand(hub, name: str) -> None:
    """An assignment in the exchange's outbound, as `assignment release` leaves one."""
    outbound = layout.exchange_root(hub.classroom) / hub.classroom.course.id / "outbound" / name
    outbound.mkdir(parents=True)
    (outbound / f"{name}.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    subprocess.run(["chmod", "-R", "a+rX", str(outbound)], check=True)


SUBMIT = """
import json, os, subprocess
folder = os.path.expanduser("~/exercises/{name}")
os.makedirs(folder, exist_ok=True)
with open(os.path.join(folder, "{name}.ipynb"), "w") as out:
    out.write(json.dumps({{"cells": [], "metadata": {{}}, "nbformat": 4, "nbformat_minor": 5}}))
with open(os.path.join(folder, "data.bin"), "wb") as out:
    out.write(b"x" * {size})
done = subprocess.run(["nbgrader", "submit", "{name}"], capture_output=True, text=True, cwd=os.path.expanduser("~"))
print(json.dumps({{"code": done.returncode, "said": done.stdout + done.stderr}}))
"""


def test_submissions_end_at_their_limits(quota_hub, pair):
    student = pair["student2"]
    release_by_hand(quota_hub, "big")
    too_big = json.loads(student.execute(SUBMIT.format(name="big", size=12 * MB), timeout=180).stdout)
    assert too_big["code"] != 0
    said = " ".join(too_big["said"].split())
    assert "Submission refused: big is 12.0 MB, more than the 8 MB a submission may be" in said, said
    inbound = layout.inbound_dir(quota_hub.classroom)
    assert not list(inbound.glob("student2+big+*"))
    fits = json.loads(student.execute(SUBMIT.format(name="big", size=MB), timeout=180).stdout)
    assert fits["code"] == 0, fits["said"]
    assert len(list(inbound.glob("student2+big+*"))) == 1

    # Around nbgrader, straight into the inbound: its own qgroup (32M) stops the write.
    direct = [(f"{layout.EXCHANGE_MOUNT}/d2l/inbound/student2+big+2000-01-01 00:00:00.000000 UTC", 64)]
    said = json.loads(student.execute(TRY_WRITES.format(targets=direct)).stdout)
    assert list(said.values()) == ["Disk quota exceeded"]


def test_a_home_made_before_limits_moves_onto_the_homes_file_system(quota_hub, docker_client):
    """`make up` (and the hub's start) moves a plain home volume in: name, labels, owner and files kept."""
    classroom, instance = quota_hub.classroom, quota_hub.classroom.spawner.instance
    name = f"{instance}-home-olduser"
    old_labels = {labels.INSTANCE: instance, labels.USER: "olduser", labels.UID: "20999"}
    old = docker_client.volumes.create(name, labels=old_labels)
    source = old.attrs["Mountpoint"]
    subprocess.run(["sh", "-c", f"mkdir -p {source}/d2l && echo mine > {source}/d2l/notes.txt && "
                    f"chown -R 20999:100 {source} && chmod 700 {source}"], check=True)
    moved = []
    homes.ensure_filesystem(docker_client, classroom, moved.append)
    assert moved == [f"moved {name} onto the homes file system"]
    volume = docker_client.volumes.get(name)
    path = homefs.home_path(classroom, name)
    assert volume.attrs["Options"]["device"] == str(path)
    assert volume.attrs["Labels"] == old_labels
    assert (path / "d2l" / "notes.txt").read_text() == "mine\n"
    assert path.stat().st_uid == 20999 and oct(path.stat().st_mode & 0o777) == "0o700"
    moved.clear()
    homes.ensure_filesystem(docker_client, classroom, moved.append)  # the second run has nothing to move
    assert moved == []


def test_up_refuses_a_home_limit_the_host_cannot_keep(quota_hub, tmp_path):
    from harness import write_classroom

    too_big = write_classroom(tmp_path / "big", limits={"home": "1G"})
    result = d2lhub("up", "--config", str(too_big), check=False)
    assert result.returncode == 2
    said = " ".join(result.stderr.split())
    assert "limits.home: 1G is more than the whole homes file system (hub.homes_size: 256M)" in said, said
    swarm = write_classroom(tmp_path / "swarm", spawner={"kind": "swarm"})
    result = d2lhub("up", "--config", str(swarm), check=False)
    said = " ".join(result.stderr.split())
    assert result.returncode == 2 and "limits.home: a home limit" in said and "spawner.kind: docker" in said, said
