"""`d2lhub export z2jh`: the values file is valid for the chart and says what classroom.yaml says."""

from pathlib import Path

import jsonschema
import pytest
import yaml

from d2lhub.config import Classroom
from d2lhub.ops import z2jh

# shared/ lies beside the repository (CI puts a read-only copy of it there).
CHART = Path(__file__).resolve().parents[2] / ".." / "shared" / "z2jh"
IMAGES = {"student": "d2lhub/student:aaaa", "student_gpu": "d2lhub/student-gpu:bbbb"}


def classroom(**extra) -> Classroom:
    return Classroom.model_validate(
        {
            "limits": {"cpu": 1.0, "memory": "3G"},
            "profiles": [
                {"name": "cpu", "display_name": "CPU"},
                {"name": "gpu", "display_name": "1 GPU", "image": "student_gpu", "gpus": 1,
                 "limits": {"cpu": 4, "memory": "16G"}, "groups": ["gpu-users"]},
            ],
            "culling": {"timeout": 1800, "every": 120},
            **extra,
        }
    )


def helm_merge(defaults, overrides):
    """Helm's rule: maps merge key by key, anything else (lists too) is replaced."""
    if isinstance(defaults, dict) and isinstance(overrides, dict):
        merged = dict(defaults)
        for key, value in overrides.items():
            merged[key] = helm_merge(defaults.get(key), value) if key in defaults else value
        return merged
    return overrides


@pytest.fixture(scope="module")
def chart():
    missing = [name for name in ("values.yaml", "values.schema.yaml") if not (CHART / name).is_file()]
    if missing:
        pytest.fail(
            f"the chart's {' and '.join(missing)} not found in {CHART.resolve()}: the tests expect shared/z2jh "
            "beside the repository's root (CI places a copy there; see docs/admin.md)",
            pytrace=False,
        )
    return yaml.safe_load((CHART / "values.yaml").read_text()), yaml.safe_load((CHART / "values.schema.yaml").read_text())


def test_export_validates_against_the_chart_schema(chart):
    defaults, schema = chart
    exported = yaml.safe_load(yaml.safe_dump(z2jh.values(classroom(), IMAGES, registry="ghcr.io/uni")))
    jsonschema.validate(helm_merge(defaults, exported), schema)


def test_schema_catches_a_broken_export(chart):
    defaults, schema = chart
    broken = z2jh.values(classroom(), IMAGES)
    broken["singleuser"]["cpu"]["limitt"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(helm_merge(defaults, broken), schema)


def test_profiles_images_limits_gpus_and_culling_carry_over():
    values = z2jh.values(classroom(), IMAGES, registry="ghcr.io/uni/")
    cpu, gpu = values["singleuser"]["profileList"]
    assert cpu["default"] is True and "default" not in gpu
    assert cpu["kubespawner_override"]["image"] == "ghcr.io/uni/d2lhub/student:aaaa"
    assert gpu["kubespawner_override"] == {
        "image": "ghcr.io/uni/d2lhub/student-gpu:bbbb",
        "cpu_limit": 4.0,
        "mem_limit": 16 * 1024**3,
        "mem_guarantee": 1024**3,
        "extra_resource_limits": {"nvidia.com/gpu": "1"},
    }
    assert "extra_resource_limits" not in cpu["kubespawner_override"]
    assert values["singleuser"]["image"] == {"name": "ghcr.io/uni/d2lhub/student", "tag": "aaaa"}
    assert values["singleuser"]["memory"]["limit"] == 3 * 1024**3
    assert values["cull"] == {"enabled": True, "timeout": 1800, "every": 120}


def test_group_only_profiles_get_a_filter_that_works():
    values = z2jh.values(classroom(), IMAGES)
    code = values["hub"]["extraConfig"]["d2lhub-profiles.py"]

    class Config:
        pass

    c = Config()
    c.KubeSpawner = Config()
    c.KubeSpawner.profile_list = values["singleuser"]["profileList"]
    exec(code, {"c": c})  # noqa: S102 - the hub runs this extraConfig code the same way

    def offered(*groups):
        class Group:
            def __init__(self, name):
                self.name = name

        spawner = type("S", (), {"user": type("U", (), {"groups": [Group(g) for g in groups]})})
        return [p["slug"] for p in c.KubeSpawner.profile_list(spawner)]

    assert offered() == ["cpu"]
    assert offered("gpu-users") == ["cpu", "gpu"]


def test_missing_image_is_named():
    with pytest.raises(ValueError, match="no built image for student_gpu"):
        z2jh.values(classroom(), {"student": "d2lhub/student:aaaa"})
