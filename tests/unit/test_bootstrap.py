"""Image tags follow their inputs, so an unchanged image is never rebuilt and a changed one always is."""

import shutil
from pathlib import Path

import pytest

from d2lhub import bootstrap
from d2lhub.config import Classroom

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
    first = bootstrap.image_tag(classroom(context, certs), "sha256:base")
    assert first == bootstrap.image_tag(classroom(context, certs), "sha256:base")
    assert first.startswith("d2lhub/student:")
    assert first != bootstrap.image_tag(classroom(context, certs), "sha256:otherbase")
    (certs / "campus.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    with_cert = bootstrap.image_tag(classroom(context, certs), "sha256:base")
    assert with_cert != first
    (context / "requirements.lock").write_text("mxnet==1.9.1\n")
    assert bootstrap.image_tag(classroom(context, certs), "sha256:base") != with_cert


def test_build_context_carries_certificates_and_delivery(context, tmp_path):
    certs = tmp_path / "certs"
    (certs / "sub").mkdir(parents=True)
    (certs / "sub/campus.crt").write_text("x")
    (certs / "notes.txt").write_text("not a certificate")
    files = bootstrap.image_inputs(classroom(context, certs))
    assert "ca-certificates/campus.crt" in files
    assert "ca-certificates/notes.txt" not in files
    assert "delivery.py" in files and "Dockerfile" in files
    assert "requirements.in" not in files


def test_no_certificates_still_builds_a_context(context):
    files = bootstrap.image_inputs(classroom(context, None))
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
