"""A refused roster file changes nothing on the real hub: same users, same groups, same gradebook."""

from __future__ import annotations

import pytest
from test_cli import d2lhub

from d2lhub import hubapi
from d2lhub.grading import workflow as grading

pytestmark = pytest.mark.integration

HEADER = "username,first name,last name,email,role\n"
BAD_FILES = {
    "duplicate": (HEADER + "newbie,New,B,,student\nnewbie,New,B,,student\n", "line 3"),
    "bad role": (HEADER + "newbie,New,B,,student\nother,O,T,,wizard\n", "line 3"),
    "bad characters": (HEADER + "newbie,New,B,,student\nbad name!,B,N,,student\n", "line 3"),
    "missing column": ("username,first name,email,role\nnewbie,New,,student\n", "line 1"),
}


def snapshot(hub) -> tuple:
    users = hubapi.api(hub.classroom, "/users").json()
    groups = hubapi.api(hub.classroom, "/groups").json()
    with grading.gradebook(hub.classroom, hub.classroom.offerings[0]) as book:
        students = sorted(student.id for student in book.students)
    return (
        sorted((u["name"], tuple(sorted(u["groups"]))) for u in users),
        sorted((g["name"], tuple(sorted(g["users"]))) for g in groups),
        students,
    )


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_refused_roster_leaves_hub_and_gradebook_unchanged(hub, tmp_path, case):
    text, line = BAD_FILES[case]
    before = snapshot(hub)
    roster = tmp_path / "roster.csv"
    roster.write_text(text)
    result = d2lhub("roster", "import", str(roster), "--config", str(hub.path), check=False)
    assert result.returncode == 2, result.stdout
    assert line in result.stderr
    assert snapshot(hub) == before
    assert "newbie" not in [name for name, _ in before[0]]
