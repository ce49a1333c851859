"""`d2lhub prestart`: the class's servers are running before the students sign in."""

from __future__ import annotations

import re
import time

import pytest
from harness import launched_hub
from typer.testing import CliRunner

from d2lhub import hubapi, state
from d2lhub.cli import app

pytestmark = pytest.mark.integration
STUDENTS = ("student1", "student2")  # the course's students group, from classroom.yaml's accounts
LECTURE = "d2l/chapter_preliminaries/ndarray.ipynb"


def servers(hub) -> dict[str, dict]:
    users = hubapi.api(hub.classroom, "/users").json()
    return {u["name"]: (u.get("servers") or {}).get("", {}) for u in users}


def test_prestart_starts_the_students_servers_once(hub):
    runner = CliRunner()
    try:
        first = runner.invoke(app, ["prestart", "--config", str(hub.path)])
        assert first.exit_code == 0, first.output
        running = servers(hub)
        for name in STUDENTS:
            assert running[name].get("ready"), running[name]
            assert f"{name} │ started" in first.output
        assert "teacher" not in first.output and "boss" not in first.output  # not in the students' group

        again = runner.invoke(app, ["prestart", "--config", str(hub.path)])
        assert again.exit_code == 0 and all(f"{n} │ already running" in again.output for n in STUDENTS), again.output

        # The student finds the server running: no spawn, straight into their own Lab.
        browser = hub.browser("student1")
        assert browser.open_server().status_code == 200
        assert browser.list_dir("d2l")

        # With the lecture's notebook, its kernel is open and has MXNet loaded before the student opens it.
        warmed = runner.invoke(app, ["prestart", "--notebook", LECTURE, "--config", str(hub.path)])
        assert warmed.exit_code == 0, warmed.output
        kernel_id = browser.open_notebook(LECTURE)
        result = browser.execute("import sys; print('mxnet' in sys.modules)", kernel_id=kernel_id, shutdown=False)
        assert (result.error, result.stdout.strip()) == (None, "True")
        other = browser.execute("import sys; print('mxnet' in sys.modules)")  # any other notebook: a plain kernel
        assert (other.error, other.stdout.strip()) == (None, "False")
        missing_notebook = runner.invoke(app, ["prestart", "--notebook", "d2l/no-such.ipynb", "--config", str(hub.path)],
                                         env={"COLUMNS": "200"})
        assert missing_notebook.exit_code == 1 and "no notebook d2l/no-such.ipynb in student1's home" in missing_notebook.output

        unknown = runner.invoke(app, ["prestart", "--user", "nobody-here", "--config", str(hub.path)])
        assert unknown.exit_code == 2 and "no such user on the hub: nobody-here" in unknown.output
        missing = runner.invoke(app, ["prestart", "--group", "no-such-group", "--config", str(hub.path)])
        assert missing.exit_code == 2 and "no-such-group" in missing.output
    finally:
        for name in STUDENTS:
            hubapi.api(hub.classroom, f"/users/{name}/server", method="DELETE")
        deadline = time.monotonic() + 60
        while any(servers(hub)[n] for n in STUDENTS) and time.monotonic() < deadline:
            time.sleep(0.5)


def test_the_hub_starts_the_class_at_each_scheduled_time(tmp_path, docker_client):
    """prestart.schedule: the hub's lecture-prestart service starts the servers; nobody runs a command."""
    hubs = launched_hub(tmp_path, docker_client,
                        prestart={"schedule": ["* * * * * */15"], "notebook": LECTURE})  # every 15 s
    hub = next(hubs)
    try:
        summary = re.compile(r"\[lecture-prestart\] 2 server\(s\) in \d+ s: 2 started, 0 already running, 0 failed")
        log = state.log_file(hub.classroom)
        deadline = time.monotonic() + 120
        while not summary.search(log.read_text()) and time.monotonic() < deadline:
            time.sleep(1)
        assert summary.search(log.read_text()), log.read_text()[-3000:]
        assert "[lecture-prestart] next start of the class's servers: " in log.read_text()
        running = servers(hub)
        assert all(running[n].get("ready") for n in STUDENTS), running
        assert not running["teacher"]  # only the course's students
        student = hub.browser("student2")
        result = student.execute("import sys; print('mxnet' in sys.modules)", kernel_id=student.open_notebook(LECTURE),
                                 shutdown=False)
        assert result.stdout.strip() == "True", result
        assert hub.browser("student1").open_server().status_code == 200
    finally:
        hubs.close()
