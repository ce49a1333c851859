"""live-restore as each classroom kind needs it; the engine's daemon.json changed only in that key.

The engine itself (a reload, servers through a restart) is test_engine_restart.py's."""

import json
import os
import subprocess
import sys
import time

import pytest

from d2lhub.ops import liverestore


def test_single_machine_hub_turns_it_on_now_and_for_the_next_start_unless_the_engine_is_in_a_swarm():
    assert liverestore.plan("docker", "inactive", False, False)[0] is True
    assert liverestore.plan("docker", "inactive", True, True) == (None, "")
    assert liverestore.plan("docker", "inactive", True, False)[0] is True  # on by a reload only: a restart would drop it
    assert liverestore.plan("docker", "inactive", False, True)[0] is True  # written, not yet reloaded
    assert liverestore.plan("docker", "inactive", True, None) == (None, "")  # an engine elsewhere that has it
    value, why = liverestore.plan("docker", "active", False, False)
    assert value is None and "Swarm mode (active)" in why and "stops every student's server" in why


def test_swarm_hub_turns_it_off_since_docker_refuses_both():
    off = (False, "live-restore off: Docker does not combine it with Swarm mode")
    assert liverestore.plan("swarm", "inactive", True, True) == off
    assert liverestore.plan("swarm", "active", False, True) == off  # an engine in a Swarm would not start again
    assert liverestore.plan("swarm", "active", False, False) == (None, "")


def test_daemon_json_keeps_its_other_settings_and_mode(tmp_path):
    path = tmp_path / "daemon.json"
    path.write_text('{"log-driver": "journald", "data-root": "/srv/docker"}')
    path.chmod(0o600)
    liverestore.write_setting(path, True)
    assert json.loads(path.read_text()) == {"log-driver": "journald", "data-root": "/srv/docker", "live-restore": True}
    assert path.stat().st_mode & 0o777 == 0o600
    liverestore.write_setting(tmp_path / "new" / "daemon.json", False)
    assert json.loads((tmp_path / "new" / "daemon.json").read_text()) == {"live-restore": False}


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_a_broken_daemon_json_is_named_and_left_alone(tmp_path, text):
    path = tmp_path / "daemon.json"
    path.write_text(text)
    with pytest.raises(liverestore.LiveRestoreError, match=str(path)):
        liverestore.write_setting(path, True)
    assert path.read_text() == text


def test_the_local_dockerd_is_found_by_its_pid_file_with_its_config_file(tmp_path):
    """A process named dockerd (Python, by another name) with the flags dockerd reads."""
    fake = tmp_path / "dockerd"
    fake.symlink_to(sys.executable)
    process = subprocess.Popen([str(fake), "-c", "import time; time.sleep(30)", "--config-file", "/srv/daemon.json",
                                "--live-restore"])
    try:
        pid_file = tmp_path / "docker.pid"
        pid_file.write_text(f"{process.pid}\n")
        deadline = time.monotonic() + 5
        while open(f"/proc/{process.pid}/comm").read().strip() != "dockerd" and time.monotonic() < deadline:
            time.sleep(0.05)
        found = liverestore.local_dockerd(pid_file)
        assert found == liverestore.Dockerd(process.pid, liverestore.Path("/srv/daemon.json"), True)
        pid_file.write_text(f"{os.getpid()}\n")  # a pid file naming another program
        assert liverestore.local_dockerd(pid_file) is None
        assert liverestore.local_dockerd(tmp_path / "missing.pid") is None
    finally:
        process.kill()
        process.wait()


def test_flags_as_dockerd_takes_them():
    assert liverestore.flag_value(["dockerd", "--config-file=/a.json"], "--config-file") == "/a.json"
    assert liverestore.flag_value(["dockerd", "--config-file", "/b.json"], "--config-file") == "/b.json"
    assert liverestore.flag_value(["dockerd"], "--config-file") is None
