"""Secrets in the state folder are created readable by their owner only, never chmodded after."""

from __future__ import annotations

import os
import stat

from d2lhub.config import Classroom
from d2lhub.state import account_passwords, cli_token, write_private


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_file_is_0600_from_the_first_byte_even_with_an_open_umask(tmp_path):
    old = os.umask(0)
    try:
        (tmp_path / "secret.partial").write_text("left by a killed run")
        (tmp_path / "secret.partial").chmod(0o644)
        write_private(tmp_path / "secret", "s3cret")
    finally:
        os.umask(old)
    assert (tmp_path / "secret").read_text() == "s3cret"
    assert mode(tmp_path / "secret") == 0o600
    assert not (tmp_path / "secret.partial").exists()


def test_tokens_and_generated_passwords_are_private(tmp_path):
    room = Classroom.model_validate({
        "hub": {"state_dir": str(tmp_path / "state")},
        "auth": {"accounts": [{"name": "ann", "role": "student"}]},
    })
    token = cli_token(room)
    assert cli_token(room) == token  # made once, then kept
    assert mode(tmp_path / "state" / "cli_token") == 0o600
    assert set(account_passwords(room)) == {"ann"}
    assert mode(tmp_path / "state" / "accounts.json") == 0o600
