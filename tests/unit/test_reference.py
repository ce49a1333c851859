"""The generated references in docs/ match the code: a new classroom.yaml key or `d2lhub` option
without docs fails here (`make docs` rewrites them)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from d2lhub.cli import reference
from d2lhub.config import Classroom


def undescribed(model: type[BaseModel], prefix: str = "") -> list[str]:
    missing = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        if not (field.description or "").strip():
            missing.append(key)
        nested, is_list = reference.model_in(field.annotation)
        if nested is not None:
            missing += undescribed(nested, f"{key}[]." if is_list else f"{key}.")
    return missing


def test_every_classroom_key_has_a_description():
    assert undescribed(Classroom) == []


def test_the_walk_reaches_nested_models_and_lists_of_them():
    text = reference.classroom_reference()
    for key in ("hub.https.cert_file", "auth.accounts[].role", "profiles[].limits.memory",
                "images.student_gpu.context", "spawner.firewall", "course.data_url", "grading.pids"):
        assert f"`{key}`" in text
    assert "| `limits.memory` | size (bytes, or e.g. `512M`, `2G`) | `3G` |" in text


def test_every_verb_is_in_the_cli_reference():
    text = reference.cli_reference()
    for verb in ("d2lhub up", "d2lhub assignment autograde", "d2lhub nodes drain", "d2lhub export z2jh"):
        assert f"`{verb}`" in text
    assert "`-j, --jobs <int range>`" in text


def test_docs_match_the_code():
    stale = reference.drift()
    assert stale == [], f"{', '.join(stale)} differ from the code: run `make docs` and commit the result"


def test_rewriting_keeps_the_prose_around_the_markers():
    section = reference.Section("x.md", "demo")
    text = f"before\n{section.begin}\nold\n{section.end}\nafter\n"
    assert reference.rewritten(text, section, "new\n") == f"before\n{section.begin}\n\nnew\n\n{section.end}\nafter\n"
    with pytest.raises(ValueError, match="markers"):
        reference.rewritten("no markers", section, "new")
