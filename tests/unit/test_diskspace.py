"""A full state folder: commands refuse up front naming it; a database error from a full disk names it too."""

import errno
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy
import sqlalchemy.exc
import yaml
from typer.testing import CliRunner

from d2lhub import diskspace
from d2lhub.cli import app
from d2lhub.config import load
from d2lhub.hub import dbfull

REPO = Path(__file__).resolve().parents[2]


def classroom_file(tmp_path: Path, **hub) -> Path:
    path = tmp_path / "classroom.yaml"
    data = {"hub": {"state_dir": str(tmp_path / "state"), **hub},
            "images": {"student": {"name": "d2lhub/student", "context": str(REPO / "images/student")}}}
    path.write_text(yaml.safe_dump(data))
    return path


def test_check_names_the_folder_and_the_setting(tmp_path, monkeypatch):
    classroom = load(classroom_file(tmp_path, min_free_space="100M"))
    monkeypatch.setattr(diskspace, "free_bytes", lambda path: 5 * 2**20)
    with pytest.raises(diskspace.DiskFull) as refused:
        diskspace.check(classroom, "import a roster")
    message = str(refused.value)
    assert f"not enough free space in {tmp_path / 'state'} to import a roster" in message
    assert "5.0 MB free, hub.min_free_space is 100.0 MB" in message
    monkeypatch.setattr(diskspace, "free_bytes", lambda path: 200 * 2**20)
    diskspace.check(classroom)


def test_free_bytes_of_a_folder_not_made_yet(tmp_path):
    assert diskspace.free_bytes(tmp_path / "not" / "yet") > 0


@pytest.mark.parametrize("verb", [["roster", "import", "roster.csv"], ["assignment", "release", "ex"],
                                  ["assignment", "autograde", "ex"], ["up"], ["restore", "backup.tar.gz"]])
def test_writing_commands_refuse_on_a_full_state_disk(tmp_path, monkeypatch, verb):
    path = classroom_file(tmp_path)
    monkeypatch.setattr(diskspace, "free_bytes", lambda folder: 0)
    result = CliRunner().invoke(app, [*verb, "--config", str(path)])
    assert result.exit_code == 2
    assert f"not enough free space in {tmp_path / 'state'}" in " ".join(result.output.split())


def test_disk_full_database_errors_name_the_folder(tmp_path):
    dbfull.explain_disk_full(tmp_path / "state")
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'hub.sqlite'}")

    @sqlalchemy.event.listens_for(engine, "before_cursor_execute")
    def disk_full(*args):
        raise sqlite3.OperationalError("database or disk is full")

    with pytest.raises(sqlalchemy.exc.OperationalError) as failed, engine.connect() as db:
        db.execute(sqlalchemy.text("create table t (x int)"))
    assert f"{tmp_path / 'state'} is full" in failed.value.jupyterhub_message
    assert dbfull.is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert not dbfull.is_disk_full(sqlite3.OperationalError("no such table: t"))
