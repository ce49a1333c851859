"""Demo account passwords: as configured, otherwise generated once and kept."""

from d2lhub.config import Classroom
from d2lhub.state import account_passwords


def classroom(tmp_path, accounts):
    return Classroom.model_validate({"hub": {"state_dir": str(tmp_path)}, "auth": {"accounts": accounts}})


def test_generated_passwords_persist(tmp_path):
    room = classroom(tmp_path, [{"name": "ann", "role": "student"}, {"name": "bob", "role": "admin", "password": "bob-secret"}])
    first = account_passwords(room)
    assert first["bob"] == "bob-secret"
    assert len(first["ann"]) >= 8
    assert account_passwords(room) == first
    assert (tmp_path / "accounts.json").stat().st_mode & 0o077 == 0


def test_new_account_keeps_old_passwords(tmp_path):
    first = account_passwords(classroom(tmp_path, [{"name": "ann", "role": "student"}]))
    second = account_passwords(classroom(tmp_path, [{"name": "ann", "role": "student"}, {"name": "cy", "role": "ta"}]))
    assert second["ann"] == first["ann"]
    assert "cy" in second
