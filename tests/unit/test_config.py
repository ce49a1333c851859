"""classroom.yaml validation: every mistake is named by its key path, and nothing is half-loaded."""

from pathlib import Path

import pytest
import yaml

from d2lhub.config import Classroom, ConfigError, load, parse_size

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "classroom.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def minimal(**extra):
    return {"images": {"student": {"name": "d2lhub/student", "context": str(REPO / "images/student")}}, **extra}


def test_repository_classroom_yaml_is_valid():
    classroom = load(REPO / "classroom.yaml")
    assert classroom.hub.port == 8000
    assert classroom.hub.ip == "127.0.0.1"
    assert {a.role for a in classroom.auth.accounts} == {"admin", "instructor", "student"}
    assert classroom.hub.state_dir == REPO / ".d2lhub"


def test_defaults_load(tmp_path):
    classroom = load(write(tmp_path, minimal()))
    assert classroom.limits.memory == 3 * 1024**3
    assert classroom.profiles[0].name == "cpu"
    assert classroom.hub.state_dir == tmp_path / ".d2lhub"


@pytest.mark.parametrize(
    "data, expected",
    [
        (minimal(hub={"prot": 8000}), "hub.prot: unknown key"),
        (minimal(hub={"port": "eighty"}), "hub.port: Input should be a valid integer"),
        (minimal(hub={"port": 70000}), "hub.port: Input should be less than or equal to 65535"),
        (minimal(limits={"memory": "lots"}), "limits.memory: expected a size like 2G"),
        (minimal(limits={"memory": "-1G"}), "limits.memory"),
        (minimal(limits={"cpu": -1}), "limits.cpu: Input should be greater than 0"),
        (minimal(auth={"accounts": [{"name": "a1", "role": "student"}, {"name": "a1", "role": "admin"}]}),
         "auth.accounts: user 'a1' is listed twice"),
        (minimal(auth={"accounts": [{"name": "Bad Name", "role": "student"}]}), "auth.accounts.0.name"),
        (minimal(auth={"accounts": [{"name": "ann", "role": "wizard"}]}), "auth.accounts.0.role"),
        (minimal(auth={"accounts": [{"role": "student"}]}), "auth.accounts.0.name: required key is missing"),
        (minimal(profiles=[{"name": "cpu", "display_name": "A"}, {"name": "cpu", "display_name": "B"}]),
         "profiles: cpu listed twice"),
        (minimal(profiles=[{"name": "gpu", "display_name": "GPU", "image": "nope"}]), "profiles.0.image"),
        ({"images": {"student": {"name": "x/y", "context": "/nonexistent"}}}, "images.student.context: no Dockerfile"),
        (minimal(prestart={"schedule": ["50 8 * * mon", "at nine"]}), "prestart.schedule: not a cron line: 'at nine'"),
        (minimal(prestart={"schedule": ["50 8 * * mon"], "timezone": "Mars/Olympus"}),
         "prestart.timezone: unknown time zone 'Mars/Olympus'"),
        ("[1, 2]", "(top level): expected a mapping"),
        ("hub: [unclosed", "not valid YAML"),
    ],
)
def test_bad_values_name_their_key(tmp_path, data, expected):
    with pytest.raises(ConfigError) as error:
        load(write(tmp_path, data))
    assert expected in str(error.value)
    assert str(tmp_path / "classroom.yaml") in str(error.value)


def test_every_problem_is_listed(tmp_path):
    with pytest.raises(ConfigError) as error:
        load(write(tmp_path, minimal(hub={"port": "x", "colour": "red"}, limits={"cpu": 0})))
    lines = str(error.value).splitlines()
    assert len(lines) == 3


def test_missing_file():
    with pytest.raises(ConfigError, match="file not found"):
        load("/nonexistent/classroom.yaml")


@pytest.mark.parametrize("text, size", [("2G", 2 * 1024**3), ("512M", 512 * 1024**2), ("1.5g", int(1.5 * 1024**3)),
                                        ("2GiB", 2 * 1024**3), (1024, 1024)])
def test_sizes(text, size):
    assert parse_size(text) == size


def test_relative_paths_follow_the_file_not_the_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir("/")
    classroom = load(write(tmp_path, minimal(hub={"state_dir": "state"}, course={"source": "book"})))
    assert classroom.hub.state_dir == tmp_path / "state"
    assert classroom.course.source == str(tmp_path / "book")


def test_git_sources_are_left_alone(tmp_path):
    classroom = load(write(tmp_path, minimal(course={"source": "https://example.invalid/d2l-en.git"})))
    assert classroom.course.source == "https://example.invalid/d2l-en.git"


def test_profile_limits_override_defaults():
    classroom = Classroom.model_validate(
        {"profiles": [{"name": "big", "display_name": "Big", "limits": {"cpu": 2, "memory": "8G"}}]}
    )
    assert classroom.limits_for(classroom.profile("big")).memory == 8 * 1024**3


def gpu_profiles(**gpus):
    data = minimal(
        profiles=[
            {"name": "cpu", "display_name": "CPU"},
            {"name": "gpu", "display_name": "1 GPU", "image": "student_gpu", "gpus": 1, "groups": ["gpu-users"]},
        ],
        gpus=gpus,
    )
    data["images"]["student_gpu"] = {"name": "d2lhub/student-gpu", "context": str(REPO / "images/student-gpu")}
    return data


def test_gpu_profiles_load(tmp_path):
    classroom = load(write(tmp_path, gpu_profiles(policy="shared", per_gpu=3, devices={"local": ["0", "1"]})))
    gpu = classroom.profile("gpu")
    assert (gpu.image, gpu.gpus, gpu.groups) == ("student_gpu", 1, ("gpu-users",))
    assert classroom.gpus.devices == {"local": ("0", "1")}
    assert classroom.images.student_gpu.context == REPO / "images/student-gpu"


@pytest.mark.parametrize(
    "data, expected",
    [
        (gpu_profiles(policy="none"), "ask for GPUs but gpus.policy is none"),
        (gpu_profiles(when_full="cpu", fallback_profile="gpu"), "gpus.fallback_profile: 'gpu' is not a profile without GPUs"),
        (gpu_profiles(policy="round-robin"), "gpus.policy: Input should be 'exclusive', 'shared' or 'none'"),
        (gpu_profiles(per_gpu=0), "gpus.per_gpu: Input should be greater than or equal to 1"),
        (minimal(profiles=[{"name": "g", "display_name": "G", "gpus": 1}]), "use image: student_gpu"),
        (minimal(profiles=[{"name": "g", "display_name": "G", "image": "cuda"}]), "profiles.0.image: Input should be"),
        (minimal(gpus={"device": {}}), "gpus.device: unknown key"),
        (gpu_profiles(when_full="wait"), "gpus.when_full: Input should be 'refuse', 'cpu' or 'queue'"),
        (gpu_profiles(when_full="queue", queue_timeout=175), "gpus.queue_timeout: 175 leaves the server no time to start"),
        (minimal(spawner={"kind": "kubernetes"}), "spawner.kind: Input should be 'docker' or 'swarm'"),
        (minimal(spawner={"hub_address": "10.0.0.1; rm"}), "spawner.hub_address: String should match pattern"),
    ],
)
def test_gpu_mistakes_are_named(tmp_path, data, expected):
    with pytest.raises(ConfigError) as error:
        load(write(tmp_path, data))
    assert expected in str(error.value)


def test_gpu_profile_needs_the_gpu_lock(tmp_path):
    data = gpu_profiles()
    data["images"]["student_gpu"] = {"name": "d2lhub/student-gpu", "context": str(tmp_path)}
    with pytest.raises(ConfigError, match="images.student_gpu.context: no requirements.lock"):
        load(write(tmp_path, data))


def test_swarm_and_queue_settings_load(tmp_path):
    data = gpu_profiles(when_full="queue", queue_timeout=60)
    data["spawner"] = {
        "kind": "swarm",
        "hub_address": "10.1.2.3",
        "volume_options": {"type": "nfs", "o": "addr=10.1.2.4,rw", "device": ":/export/{volume}"},
    }
    classroom = load(write(tmp_path, data))
    assert (classroom.spawner.kind, classroom.spawner.hub_address, classroom.spawner.volume_driver) == (
        "swarm", "10.1.2.3", "local")
    assert (classroom.gpus.when_full, classroom.gpus.queue_timeout) == ("queue", 60)
    assert load(write(tmp_path, minimal())).spawner.kind == "docker"


def test_swarm_egress_is_open_unless_written_and_a_written_policy_is_refused():
    """The egress proxy and its packet rules live on the hub's host only: a Swarm's other nodes
    would not keep them, so the default there is open and anything else is refused by name."""
    assert Classroom.model_validate({"spawner": {"kind": "swarm"}}).network.egress == "open"
    assert Classroom.model_validate({}).network.egress == "allowlist"
    with pytest.raises(ValueError, match="network.egress: none is kept by a proxy and packet rules on the hub's host only"):
        Classroom.model_validate({"spawner": {"kind": "swarm"}, "network": {"egress": "none"}})
