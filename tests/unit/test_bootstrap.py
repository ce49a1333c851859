"""Image tags follow their inputs, so an unchanged image is never rebuilt and a changed one always is."""

import shutil
from pathlib import Path

import pytest

from d2lhub import engine, studentimage
from d2lhub.config import Classroom
from d2lhub.ops import bootstrap

REPO = Path(__file__).resolve().parents[2]


def classroom(context: Path, certs: Path | None) -> Classroom:
    return Classroom.model_validate(
        {"images": {"student": {"name": "d2lhub/student", "context": str(context)},
                    "extra_ca_certs": str(certs) if certs else None}}
    )


@pytest.fixture
def context(tmp_path):
    target = tmp_path / "student"
    shutil.copytree(REPO / "images/student", target)
    return target


def test_tag_is_stable_and_follows_inputs(context, tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    first = studentimage.image_tag(classroom(context, certs), "sha256:base")
    assert first == studentimage.image_tag(classroom(context, certs), "sha256:base")
    assert first.startswith("d2lhub/student:")
    assert first != studentimage.image_tag(classroom(context, certs), "sha256:otherbase")
    (certs / "campus.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    with_cert = studentimage.image_tag(classroom(context, certs), "sha256:base")
    assert with_cert != first
    (context / "requirements.lock").write_text("mxnet==1.9.1\n")
    assert studentimage.image_tag(classroom(context, certs), "sha256:base") != with_cert


def test_build_context_carries_certificates_and_delivery(context, tmp_path):
    certs = tmp_path / "certs"
    (certs / "sub").mkdir(parents=True)
    (certs / "sub/campus.crt").write_text("x")
    (certs / "notes.txt").write_text("not a certificate")
    files = studentimage.image_inputs(classroom(context, certs))
    assert "ca-certificates/campus.crt" in files
    assert "ca-certificates/notes.txt" not in files
    assert "delivery.py" in files and "Dockerfile" in files
    assert "requirements.in" not in files


def test_no_certificates_still_builds_a_context(context):
    files = studentimage.image_inputs(classroom(context, None))
    assert files["ca-certificates/.keep"] == b""


@pytest.mark.parametrize("image, suite", [("debian:bookworm-slim", "bookworm"), ("debian:trixie", "trixie")])
def test_debian_suite(image, suite):
    assert bootstrap.debian_suite(image) == suite


@pytest.mark.parametrize("image", ["ubuntu:24.04", "debian", "quay.io/x/debian:bookworm"])
def test_non_debian_base_needs_pull(image):
    with pytest.raises(bootstrap.BootstrapError, match="base_source: pull"):
        bootstrap.debian_suite(image)


def test_dockerfile_keeps_upstream_default_base():
    dockerfile = (REPO / "images/student/Dockerfile").read_text()
    assert "ARG BASE_IMAGE=debian:bookworm-slim" in dockerfile
    assert "USER root" not in dockerfile


def test_gpu_image_shares_the_dockerfile_and_brings_its_own_lock(context, tmp_path):
    gpu_context = tmp_path / "student-gpu"
    shutil.copytree(REPO / "images/student-gpu", gpu_context)
    room = Classroom.model_validate(
        {"images": {"student": {"name": "d2lhub/student", "context": str(context)},
                    "student_gpu": {"name": "d2lhub/student-gpu", "context": str(gpu_context)},
                    "extra_ca_certs": None}}
    )
    cpu, gpu = studentimage.image_inputs(room, "student"), studentimage.image_inputs(room, "student_gpu")
    assert gpu["Dockerfile"] == cpu["Dockerfile"] and gpu["d2lhub-start"] == cpu["d2lhub-start"]
    assert b"mxnet-cu117==1.9.1" in gpu["requirements.lock"] and b"mxnet-cu117" not in cpu["requirements.lock"]
    assert studentimage.build_args(room, "student_gpu")["VARIANT"] == "gpu"
    gpu_tag = studentimage.image_tag(room, "sha256:base", "student_gpu")
    assert gpu_tag.startswith("d2lhub/student-gpu:")
    (context / "Dockerfile").write_text((context / "Dockerfile").read_text() + "\n# changed\n")
    assert studentimage.image_tag(room, "sha256:base", "student_gpu") != gpu_tag  # the shared Dockerfile is an input


def test_images_in_use_follow_the_profiles():
    cpu_only = Classroom.model_validate({})
    assert studentimage.images_in_use(cpu_only) == ["student"]
    both = Classroom.model_validate(
        {"profiles": [{"name": "gpu", "display_name": "GPU", "image": "student_gpu", "gpus": 1},
                      {"name": "cpu", "display_name": "CPU"}]}
    )
    assert studentimage.images_in_use(both) == ["student", "student_gpu"]


def test_gpu_lock_is_the_cpu_lock_with_cuda_mxnet():
    """The two images differ only in MXNet's build and NVIDIA's libraries."""
    def pins(path):
        return {line for line in path.read_text().splitlines() if line and not line.startswith("#")}

    cpu, gpu = pins(REPO / "images/student/requirements.lock"), pins(REPO / "images/student-gpu/requirements.lock")
    assert cpu - gpu == {"mxnet==1.9.1"}
    extra = gpu - cpu
    assert "mxnet-cu117==1.9.1" in extra
    assert {line.split("==")[0] for line in extra - {"mxnet-cu117==1.9.1"}} <= {
        "nvidia-cuda-runtime-cu11", "nvidia-cublas-cu11", "nvidia-cufft-cu11", "nvidia-curand-cu11",
        "nvidia-cusolver-cu11", "nvidia-cusparse-cu11", "nvidia-cuda-nvrtc-cu11", "nvidia-nvtx-cu11",
        "nvidia-cudnn-cu11", "nvidia-nccl-cu11", "setuptools", "wheel",
    }


class Network:
    def __init__(self, attrs: dict):
        self.name, self.attrs = "bridge", attrs


def test_gateway_from_the_network_or_else_its_interface():
    recorded = {"IPAM": {"Config": [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]}}
    assert engine.network_gateway(Network(recorded)) == "172.17.0.1"
    # an engine's first start records the default bridge without its gateway: ask the interface
    first_start = {"IPAM": {"Config": [{"Subnet": "127.0.0.0/8"}]}, "Options": {"com.docker.network.bridge.name": "lo"}}
    assert engine.network_gateway(Network(first_start)) == "127.0.0.1"
    gone = {"IPAM": {"Config": [{"Subnet": "10.9.0.0/16"}]}, "Options": {"com.docker.network.bridge.name": "no-such-if0"}}
    with pytest.raises(engine.EngineError, match="network bridge has no gateway address"):
        engine.network_gateway(Network(gone))


def test_squid_is_installed_only_for_allowlist_and_the_system_service_stopped(monkeypatch):
    calls = []
    found = iter([None, "/usr/sbin/squid"])
    monkeypatch.setattr(bootstrap, "find_squid", lambda: next(found))
    monkeypatch.setattr(bootstrap, "apt_install", lambda *packages, say: calls.append(("apt", packages)))
    monkeypatch.setattr(bootstrap, "systemd_runs", lambda: True)
    monkeypatch.setattr(bootstrap.subprocess, "run", lambda command, **_: calls.append(("run", tuple(command))))
    assert bootstrap.ensure_egress_proxy(Classroom.model_validate({"network": {"egress": "open"}})) is None
    assert calls == []
    assert bootstrap.ensure_egress_proxy(Classroom(), say=lambda _: None) == "/usr/sbin/squid"
    assert calls == [("apt", ("squid",)), ("run", ("systemctl", "disable", "--now", "squid"))]
