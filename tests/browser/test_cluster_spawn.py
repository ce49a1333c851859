"""The spawn page of a Swarm classroom, in Chromium: this host's engine and one worker in a container
with a fake GPU inventory (labels only; tests/integration/cluster.py starts them once for the module).

student1 is in the GPU group: the page offers two servers, they pick the GPU one and land in their
Lab, served from the GPU worker with GPU 0 assigned. student2 may have only the CPU server: no
picker, straight to their Lab, on the hub's host (`gpus.reserve_nodes` keeps the GPU worker for
GPU students).
"""

from __future__ import annotations

import re
import time

import pytest
from cluster import running_hub, swarm_bed, task_node
from pages import SPAWN_TIMEOUT_MS, sign_in
from playwright.sync_api import expect

from d2lhub import labels

pytestmark = [pytest.mark.browser, pytest.mark.integration]

GROUP = "gpu-users"
PROFILES = [
    {"name": "cpu", "display_name": "CPU server"},
    {"name": "gpu", "display_name": "GPU server", "image": "student_gpu", "gpus": 1, "groups": [GROUP]},
]
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def bed(docker_client):
    yield from swarm_bed(docker_client)


@pytest.fixture(scope="module")
def gpu_hub(tmp_path_factory, docker_client, bed):
    started = running_hub(tmp_path_factory.mktemp("cluster-spawn"), docker_client, bed, [], 1, TIMINGS, PROFILES)
    hub = next(started)
    try:
        hub.admin = hub.browser("boss")
        made = hub.admin.hub_api("POST", f"/groups/{GROUP}", json={"users": ["student1"]})
        assert made.status_code == 201, made.text
        yield hub
    finally:
        next(started, None)


def stop_server(hub, name: str, timeout: float = 90) -> None:
    hub.admin.hub_api("DELETE", f"/users/{name}/server")
    deadline = time.monotonic() + timeout
    while hub.admin.hub_api("GET", f"/users/{name}").json().get("servers"):
        assert time.monotonic() < deadline, f"{name}'s server did not stop"
        time.sleep(0.5)


def test_a_gpu_student_picks_the_gpu_server_and_lands_on_the_gpu_worker(gpu_hub, docker_client, bed, page):
    sign_in(page, gpu_hub, "student1")
    page.wait_for_url(re.compile(r"/hub/spawn(/student1)?(\?.*)?$"))
    picker = page.get_by_role("group", name="Choose your server")
    expect(picker.get_by_role("radio")).to_have_count(2)
    gpu = picker.get_by_role("radio", name="GPU server")
    expect(picker.get_by_role("radio", name="CPU server")).to_be_checked()
    gpu.check()
    expect(gpu).to_be_checked()
    page.get_by_role("button", name="Start").click()
    page.wait_for_url(re.compile(r"/user/student1/lab"), timeout=SPAWN_TIMEOUT_MS)

    spec, hostname = task_node(docker_client, gpu_hub, "student1")
    assert hostname == bed.workers[-1]  # the worker labelled with the fake GPU
    assert "NVIDIA_VISIBLE_DEVICES=0" in spec["ContainerSpec"]["Env"]
    assert spec["ContainerSpec"]["Labels"][labels.PROFILE] == "gpu"
    assert spec["ContainerSpec"]["Image"] == gpu_hub.pushed["student_gpu"]
    stop_server(gpu_hub, "student1")


def test_a_cpu_only_student_sees_no_picker_and_runs_off_the_gpu_worker(gpu_hub, docker_client, bed, page):
    pages: list[str] = []
    page.on("response", lambda r: pages.append(r.url) if r.request.resource_type == "document" and r.status == 200 else None)
    sign_in(page, gpu_hub, "student2")
    page.wait_for_url(re.compile(r"/user/student2/lab"), timeout=SPAWN_TIMEOUT_MS)
    assert not [url for url in pages if re.search(r"/hub/spawn(/student2)?(\?|$)", url)], pages  # no form shown

    spec, hostname = task_node(docker_client, gpu_hub, "student2")
    assert hostname == docker_client.info()["Name"] and hostname not in bed.workers
    assert spec["ContainerSpec"]["Labels"][labels.PROFILE] == "cpu"
    assert not any(env.startswith("NVIDIA_VISIBLE_DEVICES") for env in spec["ContainerSpec"].get("Env") or [])
    stop_server(gpu_hub, "student2")
