"""Disk limits in classroom.yaml: the defaults, where a home limit can hold, and sizes the homes
file system refuses before anything is made (d2lhub.limits, d2lhub.homefs.check_sizes); no I/O."""

from pathlib import Path

import pytest
import yaml

from d2lhub import homefs
from d2lhub.config import Classroom, ConfigError, load
from d2lhub.grading import layout
from d2lhub.sizes import format_size

REPO = Path(__file__).resolve().parents[2]
G, M = 2**30, 2**20


def classroom(**data) -> Classroom:
    return Classroom.model_validate(data)


def test_homes_are_limited_by_default():
    default = classroom()
    assert default.limits.home == 5 * G and default.limits.tmp == 256 * M
    assert default.hub.homes_size == 20 * G
    assert default.grading.max_submission == 100 * M and default.grading.inbound_size == 2 * G
    assert homefs.enabled(default)


def test_a_swarm_or_another_volume_driver_has_no_default_home_limit():
    swarm = classroom(spawner={"kind": "swarm"}, profiles=[{"name": "cpu", "display_name": "CPU", "limits": {"cpu": 2}}])
    assert swarm.limits.home is None and swarm.profiles[0].limits.home is None
    assert not homefs.enabled(swarm)
    nfs = classroom(spawner={"volume_driver": "local", "volume_options": {"type": "nfs", "device": ":/x/{volume}"}})
    assert not homefs.enabled(nfs)  # homes on an NFS export: the export's own quotas, if any
    assert not homefs.enabled(classroom(spawner={"volume_driver": "rexray"}))


@pytest.mark.parametrize("data", [
    {"spawner": {"kind": "swarm"}, "limits": {"home": "1G"}},
    {"spawner": {"volume_driver": "rexray"}, "profiles": [{"name": "big", "display_name": "B", "limits": {"home": "2G"}}]},
])
def test_a_home_limit_written_where_it_cannot_hold_is_refused_by_key(tmp_path, data):
    path = tmp_path / "classroom.yaml"
    path.write_text(yaml.safe_dump({"images": {"student": {"name": "d2lhub/student",
                                                            "context": str(REPO / "images/student")}}, **data}))
    with pytest.raises(ConfigError, match=r"limits\.home: a home limit .* needs spawner\.kind: docker, spawner\.volume_driver: local"):
        load(path)


def test_a_submission_limit_above_the_inbounds_is_refused():
    with pytest.raises(ValueError, match="grading.max_submission is larger than grading.inbound_size"):
        classroom(grading={"max_submission": "3G"})


@pytest.mark.parametrize("data, expected", [
    ({"limits": {"home": "30G"}}, "limits.home: 30G is more than the whole homes file system (hub.homes_size: 20G)"),
    ({"profiles": [{"name": "x", "display_name": "X", "limits": {"home": "1M"}}]},
     "profiles.x.limits.home: 1M is below what btrfs can enforce (16M)"),
    ({"hub": {"homes_size": "1G"}, "limits": {"home": "512M"}}, "grading.inbound_size: 2G is more than hub.homes_size (1G)"),
])
def test_sizes_the_homes_file_system_cannot_keep_are_refused_with_the_key(data, expected):
    with pytest.raises(homefs.QuotaError) as refused:
        homefs.check_sizes(classroom(**data))
    assert expected in str(refused.value)


def test_a_student_limit_set_by_the_admin_wins_over_the_profiles(tmp_path):
    room = classroom(hub={"state_dir": str(tmp_path)})
    profile = room.profiles[0]
    assert homefs.limit_for(room, "ada", profile) == 5 * G
    homefs.set_override(room, "ada", 8 * G)
    assert homefs.limit_for(room, "ada", profile) == 8 * G
    assert homefs.limit_for(room, "bob", profile) == 5 * G
    assert oct((tmp_path / "quotas.json").stat().st_mode & 0o777) == "0o600"


def test_the_students_submit_refuses_a_submission_over_the_limit():
    text = layout.student_config(Classroom().offerings, 8 * M)
    assert "MAX_SUBMISSION = 8388608" in text
    compile(text, "nbgrader_config.py", "exec")


@pytest.mark.parametrize("size, shown", [(5 * G, "5G"), (63 * M + 512 * 1024, "63.5M"), (1536, "1.5K"), (10, "10B")])
def test_sizes_are_shown_short(size, shown):
    assert format_size(size) == shown
