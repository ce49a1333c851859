"""A classroom survives being moved: backup, restore onto a fresh hub; and the hub serves HTTPS."""

from __future__ import annotations

import csv
import io
import json
import subprocess

import pytest
import requests
from harness import (
    REPO,
    RunningHub,
    launched_hub,
    leave_proof,
    place_collected,
    remove_labelled,
    server_uid,
    write_classroom,
)
from test_cli import d2lhub

from d2lhub import identity

pytestmark = pytest.mark.integration
EXERCISE = "ex01-tensors-autograd"
FIXTURES = REPO / "assignments" / "fixtures" / EXERCISE
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


def grade_by_autograde(hub, student: str, fixture: str) -> None:
    """The real grading path from release on: the fixture lands where `collect` puts a submission,
    then `d2lhub assignment autograde` runs it in the sandbox and writes the gradebook."""
    d2lhub("assignment", "release", EXERCISE, "--config", str(hub.path))
    place_collected(hub.classroom, student, EXERCISE, (FIXTURES / f"{fixture}.ipynb").read_text())
    graded = d2lhub("assignment", "autograde", EXERCISE, "--config", str(hub.path)).stdout
    assert f"{student} │ {EXPECTED[fixture]} / 10" in graded, graded


def exported_grades(hub) -> dict[str, dict]:
    text = d2lhub("grades", "export", "--config", str(hub.path)).stdout
    return {row["username"]: row for row in csv.DictReader(io.StringIO(text))}


def test_backup_restores_every_students_work_uid_and_grades_onto_a_fresh_hub(tmp_path, docker_client):
    archive = tmp_path / "classroom.tar.gz"
    origin = launched_hub(tmp_path / "origin", docker_client)
    hub = next(origin)
    try:
        # uids in order of first spawn, not of the hub's accounts
        uids = leave_proof(hub, docker_client, ("student2", "student1"), "{name}'s work, backed up")
        grade_by_autograde(hub, "student1", "partial")
        assert float(exported_grades(hub)["student1"][EXERCISE]) == EXPECTED["partial"]
        result = d2lhub("backup", "--config", str(hub.path), "--out", str(archive))
        assert "volume(s)" in result.stdout
        assert archive.stat().st_mode & 0o777 == 0o600  # cookie secret, tokens, initial passwords inside
    finally:
        origin.close()

    fresh_path = write_classroom(tmp_path / "fresh")
    fresh = RunningHub(fresh_path)
    try:
        d2lhub("restore", str(archive), "--config", str(fresh_path))
        again = d2lhub("restore", str(archive), "--config", str(fresh_path), check=False)
        assert again.returncode == 2 and "already holds a hub database" in again.stderr
        fresh.start()
        grades = exported_grades(fresh)  # the gradebook came back with the state folder
        assert float(grades["student1"][EXERCISE]) == EXPECTED["partial"], grades
        assert float(grades["student1"]["total"]) == EXPECTED["partial"]
        assert identity.registry(fresh.classroom).read() == uids  # the registry came back too
        for name in ("student1", "student2"):  # the other order this time
            student = fresh.browser(name)
            student.spawn()
            student.open_server()
            assert student.read_file("proof.txt") == f"{name}'s work, backed up"
            assert server_uid(docker_client, fresh.classroom, name) == uids[name]
            student.stop()
    finally:
        fresh.stop()
        remove_labelled(docker_client, lambda value: value == fresh.classroom.spawner.instance)


def test_restore_refuses_what_is_not_a_backup(tmp_path):
    bogus = tmp_path / "bogus.tar.gz"
    bogus.write_bytes(b"not an archive")
    result = d2lhub("restore", str(bogus), "--config", str(write_classroom(tmp_path)), check=False)
    assert result.returncode == 2
    assert "not a d2lhub backup" in result.stderr


def test_hub_serves_https_with_its_certificate(tmp_path, docker_client):
    cert, key = tmp_path / "hub.crt", tmp_path / "hub.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    hubs = launched_hub(tmp_path / "tls", docker_client, hub={"https": {"cert_file": str(cert), "key_file": str(key)}})
    hub = next(hubs)
    try:
        assert hub.url.startswith("https://")
        assert requests.get(f"{hub.url}/hub/login", verify=str(cert), timeout=30).status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{hub.url}/hub/login", timeout=30)  # not trusted without the certificate
        plain = hub.url.replace("https://", "http://")
        with pytest.raises(requests.RequestException):
            requests.get(f"{plain}/hub/login", timeout=10)
    finally:
        hubs.close()
