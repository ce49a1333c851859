"""The admin's commands against a real engine: `up` prints the sign-ins, `status` shows servers,
`down` stops everything but keeps the students' volumes; a bad classroom.yaml stops start-up."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from harness import ACCOUNTS, REPO, ROLES, RunningHub, remove_labelled, write_classroom

from d2lhub import labels

pytestmark = pytest.mark.integration


def d2lhub(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "d2lhub.cli", *args], capture_output=True, text=True, timeout=600, cwd=REPO,
        env={**os.environ, "COLUMNS": "200"},
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def classroom_file(tmp_path, docker_client):
    path = write_classroom(tmp_path)
    yield path
    instance = yaml.safe_load(path.read_text())["spawner"]["instance"]
    d2lhub("down", "--config", str(path), check=False)
    remove_labelled(docker_client, lambda value: value == instance)


def test_up_status_down(classroom_file, docker_client):
    up = d2lhub("up", "--config", str(classroom_file))
    hub = RunningHub(classroom_file)
    assert hub.url in up.stdout
    for name, password in ACCOUNTS.items():
        assert f"  {name} / {password} ({ROLES[name]})" in up.stdout

    browser = hub.browser("student1")
    browser.spawn()
    status = d2lhub("status", "--config", str(classroom_file)).stdout
    row = next(line for line in status.splitlines() if "student1" in line)
    assert "ready" in row
    assert f"{hub.classroom.spawner.instance}-student1" in row
    assert re.search(r"d2lhub/student:[0-9a-f]{16}", row)
    assert "stopped" in next(line for line in status.splitlines() if "student2" in line)

    down = d2lhub("down", "--config", str(classroom_file))
    assert "hub stopped; 1 student server(s) stopped" in down.stdout
    label = f"{labels.INSTANCE}={hub.classroom.spawner.instance}"
    assert docker_client.containers.list(filters={"label": label}) == []
    volumes = [v.name for v in docker_client.volumes.list(filters={"label": label})]
    assert f"{hub.classroom.spawner.instance}-home-student1" in volumes
    assert d2lhub("status", "--config", str(classroom_file), check=False).returncode == 2


@pytest.mark.parametrize(
    "change, message",
    [
        ({"limits": {"memroy": "2G"}}, "limits.memroy: unknown key"),
        ({"limits": {"cpu": "many"}}, "limits.cpu: Input should be a valid number"),
        ({"images": {"student": {"name": "d2ltest/absent", "context": str(REPO / "images/student")}}},
         "student image d2ltest/absent:"),
    ],
)
def test_bad_classroom_stops_hub_start_and_changes_nothing(tmp_path, docker_client, change, message):
    path = write_classroom(tmp_path, **change)
    state = Path(yaml.safe_load(path.read_text())["hub"]["state_dir"])
    env = {**os.environ, "D2LHUB_CONFIG": str(path)}
    result = subprocess.run(
        [sys.executable, "-m", "jupyterhub", "-f", str(REPO / "jupyterhub_config.py")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
    )
    assert result.returncode != 0
    assert message in result.stderr
    assert not (state / "jupyterhub.sqlite").exists()
    assert not (tmp_path / "jupyterhub.sqlite").exists()


def test_cli_refuses_bad_config_in_one_line(tmp_path):
    path = write_classroom(tmp_path, hub={"port": -5})
    result = d2lhub("up", "--config", str(path), check=False)
    assert result.returncode == 2
    assert "hub.port: Input should be greater than or equal to 1" in result.stderr
    assert result.stdout == ""
