"""GPU assignment through the real spawner on the real engine, with a fake inventory.

This machine has no NVIDIA runtime, so a container with a GPU request is created but
cannot start: the test checks what Docker was asked for (each container's
DeviceRequests) and that the failure to start says what the host lacks.
"""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from harness import TEST_PREFIX, remove_labelled
from jupyterhub.objects import Hub

from d2lhub import labels
from d2lhub.config import Classroom
from d2lhub.hub import gpus
from d2lhub.hub.spawner import ClassroomSpawner

BASE = "debian:bookworm-slim"  # never started with a GPU here, so the small base image will do


@pytest.fixture
def classroom(docker_client, tmp_path):
    instance = f"{TEST_PREFIX}gpu-{uuid.uuid4().hex[:8]}"
    room = Classroom.model_validate(
        {
            "hub": {"state_dir": str(tmp_path / "state")},
            "spawner": {"instance": instance},
            "limits": {"home": None},  # spawners made here, without the hub's start that mounts the homes file system
            "profiles": [
                {"name": "cpu", "display_name": "CPU"},
                {"name": "gpu", "display_name": "1 GPU", "image": "student_gpu", "gpus": 1, "groups": ["gpu-users"]},
            ],
            "gpus": {"policy": "exclusive", "devices": {gpus.LOCAL: ["0", "1"]}},
        }
    )
    ClassroomSpawner.reset_shared_state()
    yield room
    ClassroomSpawner.reset_shared_state()
    remove_labelled(docker_client, lambda value: value == instance)
    for volume in docker_client.volumes.list(filters={"name": instance}):  # made by Docker itself, unlabelled
        volume.remove(force=True)


def spawner(room: Classroom, state_file, name: str, uid: int, profile: str, groups=("gpu-users",)) -> ClassroomSpawner:
    user = SimpleNamespace(
        name=name, id=uid, escaped_name=name, url=f"/user/{name}/", base_url="/", settings={}, orm_user=None,
        groups=[SimpleNamespace(name=g) for g in groups], admin=False,
    )
    made = ClassroomSpawner(
        user=user, hub=Hub(), classroom=room, images={"student": BASE, "student_gpu": BASE}, image=BASE,
        gpu_state_file=str(state_file), api_token="token", oauth_client_id=f"client-{name}",
        # The hub runs remove=True (auto-remove), which makes Docker delete a container whose start
        # failed; keeping it is the one difference here, so the test can read what was created.
        prefix=room.spawner.instance, network_name="none", remove=False,
    )
    made.user_options = {"profile": profile}
    return made


async def start_without_runtime(made: ClassroomSpawner) -> dict:
    """Start as the hub would; here it must stop at Docker's missing NVIDIA driver. Returns the created container."""
    with pytest.raises(RuntimeError, match="cannot give containers GPUs: install the NVIDIA driver"):
        await made.start()
    return made.client.inspect_container(made.container_name)


def run(coroutine):
    """Its own thread and loop: another test's library (Playwright) may hold this thread's loop."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


def device_ids(container: dict) -> list[str]:
    requests = container["HostConfig"]["DeviceRequests"] or []
    assert [r["Capabilities"] for r in requests] == [[["gpu"]]]
    return [i for r in requests for i in r["DeviceIDs"]]


def test_exclusive_gpus_across_students_and_a_hub_restart(classroom, docker_client, tmp_path):
    state = tmp_path / "gpus.json"

    async def scenario():
        alice, bob = (spawner(classroom, state, n, i, "gpu") for n, i in (("alice", 1), ("bob", 2)))
        a, b = await start_without_runtime(alice), await start_without_runtime(bob)
        assert sorted(device_ids(a) + device_ids(b)) == ["0", "1"]  # explicit, different GPUs
        assert a["Config"]["Labels"][labels.SERVER_GPUS] == device_ids(a)[0]
        assert f"Assigned GPU {device_ids(a)[0]}" in alice._events

        carol = spawner(classroom, state, "carol", 3, "gpu")
        with pytest.raises(gpus.NoGpuFree, match=r"All GPUs are taken \(2 of 2 in use, one student per GPU\)"):
            await carol.start()

        # A CPU student gets no GPU request at all.
        dave = spawner(classroom, state, "dave", 4, "cpu", groups=())
        dave._apply_profile(dave.chosen_profile())
        await dave.create_object()
        assert not docker_client.api.inspect_container(dave.container_name)["HostConfig"]["DeviceRequests"]

        # The hub restarts (spawners come back from their saved state); meanwhile bob's container died. Alice keeps hers, bob's goes to carol.
        saved_alice = alice.get_state()
        docker_client.api.remove_container(bob.container_name, force=True)
        ClassroomSpawner.reset_shared_state()
        carol = spawner(classroom, state, "carol", 3, "gpu")
        c = await start_without_runtime(carol)
        assert device_ids(c) == device_ids(b)
        erin = spawner(classroom, state, "erin", 5, "gpu")
        with pytest.raises(gpus.NoGpuFree):
            await erin.start()

        # Stopping (or culling, which stops) frees the GPU; a second stop is harmless.
        alice = spawner(classroom, state, "alice", 1, "gpu")
        alice.load_state(saved_alice)
        await alice.stop()
        await alice.stop()
        e = await start_without_runtime(erin)
        assert device_ids(e) == device_ids(a)

    run(scenario())


def test_gpu_profiles_are_offered_only_to_their_groups(classroom, tmp_path):
    student = spawner(classroom, tmp_path / "gpus.json", "frank", 6, "gpu", groups=())
    assert [p.name for p in student.allowed_profiles()] == ["cpu"]
    assert student.options_form == ""  # one choice: no form
    with pytest.raises(ValueError, match=r"server type 'gpu' is not offered to frank \(offered: cpu\)"):
        student.chosen_profile()
    member = spawner(classroom, tmp_path / "gpus.json", "gina", 7, "gpu")
    form = member.options_form
    assert 'value="gpu"' in form and 'value="cpu"' in form


def test_full_gpus_fall_back_to_cpu_when_configured(docker_client, tmp_path):
    room = Classroom.model_validate(
        {
            "hub": {"state_dir": str(tmp_path / "state")},
            "spawner": {"instance": f"{TEST_PREFIX}gpu-{uuid.uuid4().hex[:8]}"},
            "limits": {"home": None},
            "profiles": [
                {"name": "cpu", "display_name": "CPU"},
                {"name": "gpu", "display_name": "1 GPU", "image": "student_gpu", "gpus": 1},
            ],
            "gpus": {"devices": {gpus.LOCAL: []}, "when_full": "cpu"},
        }
    )
    ClassroomSpawner.reset_shared_state()
    try:
        made = spawner(room, tmp_path / "gpus.json", "hank", 8, "gpu")
        made._events = []
        profile, assignment = run(made._assign_gpus(made.chosen_profile()))
        assert (profile.name, assignment) == ("cpu", None)
        assert made._events == ["This hub has no GPUs to hand out; choose a CPU server. Starting CPU instead."]
    finally:
        ClassroomSpawner.reset_shared_state()
