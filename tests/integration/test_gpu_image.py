"""The GPU student image builds from the shared Dockerfile, and its MXNet finds every CUDA
library in NVIDIA's wheels; only libcuda.so.1, which the host driver supplies, is missing here."""

from __future__ import annotations

import re

import pytest
from harness import REPO, TEST_PREFIX

from d2lhub import labels
from d2lhub.config import Classroom
from d2lhub.ops import bootstrap

LIBMXNET = "/opt/venv/lib/python3.11/site-packages/mxnet/libmxnet.so"


@pytest.fixture(scope="module")
def gpu_image(docker_client):
    classroom = Classroom.model_validate(
        {"profiles": [{"name": "gpu", "display_name": "1 GPU", "image": "student_gpu", "gpus": 1}]}
    ).resolve(REPO)
    bootstrap.ensure_base_image(docker_client, classroom)
    return bootstrap.ensure_student_image(docker_client, classroom, key="student_gpu")


def run(docker_client, image: str, command: str) -> str:
    return docker_client.containers.run(
        image, ["sh", "-c", command], entrypoint=[], remove=True, network_disabled=True,
        labels={labels.INSTANCE: f"{TEST_PREFIX}gpu-image"},
    ).decode()


def test_libmxnet_needs_nothing_but_the_driver(docker_client, gpu_image):
    ldd = run(docker_client, gpu_image, f"ldd {LIBMXNET}")
    missing = sorted(re.findall(r"^\s*(\S+) => not found", ldd, re.MULTILINE))
    assert missing == ["libcuda.so.1"], ldd
    for library in ("libcudart.so.11.0", "libcublas.so.11", "libcublasLt.so.11", "libcufft.so.10",
                    "libcurand.so.10", "libcusolver.so.11", "libcusparse.so.11", "libnvrtc.so.11.2",
                    "libcudnn.so.8", "libnccl.so.2", "libnvToolsExt.so.1"):
        found = re.search(rf"^\s*{re.escape(library)} => (\S+)", ldd, re.MULTILINE)
        assert found, f"libmxnet.so no longer links {library}:\n{ldd}"
        assert "/site-packages/nvidia/" in found.group(1), f"{library} resolved outside the wheels: {found.group(1)}"


def test_gpu_image_is_the_student_environment_with_cuda_mxnet(docker_client, gpu_image):
    versions = run(
        docker_client, gpu_image,
        "pip list --format=freeze 2>/dev/null | grep -E '^(mxnet|mxnet-cu117|numpy|d2l|nbgrader)==';"
        "python -c 'import d2l, nbgrader; print(\"imports ok\")'",
    )
    assert "mxnet-cu117==1.9.1" in versions and "\nmxnet==" not in versions
    assert "numpy==1.23.5" in versions and "d2l==1.0.3" in versions and "imports ok" in versions
