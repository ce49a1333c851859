"""Integration check of the nbgrader exercise sources in ``assignments/``, in the student image.

The checks need nbgrader and an importable ``mxnet`` (the notebook kernel is
the image's ``python3`` kernelspec); the host has neither, so they run in one
throwaway container of the built student image: no network, a student's
non-root uid, ``assignments/`` mounted read-only and copied into a scratch
home, so that nbgrader's ``gradebook.db``, ``release/``, ``submitted/`` and
``autograded/`` never end up in the repository. The container runs the
pytest-free helpers below (sent in by their source) and prints one JSON
report, which the tests read. ``autograde_fixtures(workdir)`` also works
directly where nbgrader and mxnet are installed.
"""
from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from harness import REPO, write_classroom

from d2lhub import config, engine
from d2lhub.studentimage import HOME, STUDENT_GID, built_image

pytestmark = pytest.mark.integration

ASSIGNMENTS = REPO / "assignments"
EXERCISES = ["ex01-tensors-autograd", "ex02-linear-regression", "ex03-classifier"]
FIXTURE_ASSIGNMENT = "ex01-tensors-autograd"
FIXTURE_DIR = ASSIGNMENTS / "fixtures" / FIXTURE_ASSIGNMENT
# nbgrader output that must never be copied from (or left in) the repository
_NBGRADER_OUTPUTS = ("gradebook.db", "release", "submitted", "autograded",
                     "feedback", "outbound", "inbound", ".ipynb_checkpoints")
ASSIGNMENTS_MOUNT = "/srv/assignments"
CONTAINER_TIMEOUT = 1200  # seconds for all three sources and the three fixtures


def _nbgrader(course: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``nbgrader <args>`` with the current interpreter inside ``course``."""
    cmd = [sys.executable, "-m", "nbgrader", *args]
    # nbgrader 0.9.6 creates gradebook.db by running the ``alembic`` executable
    # found on PATH, so the interpreter's bin/ must be on PATH even when Python
    # is started as /path/to/venv/bin/python without activating the venv.
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    proc = subprocess.run(cmd, cwd=course, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def copy_course(workdir: Path, assignments: Path = ASSIGNMENTS) -> Path:
    """Copy the course folder to ``workdir/course`` without any nbgrader output."""
    course = Path(workdir) / "course"
    shutil.copytree(assignments, course, ignore=shutil.ignore_patterns(*_NBGRADER_OUTPUTS))
    return course


def autograde_fixtures(workdir, assignments: Path = ASSIGNMENTS) -> dict[str, float]:
    """Release ex01, autograde the three fixture submissions, return their scores.

    Each fixture ``fixtures/ex01-tensors-autograd/<student>.ipynb`` is submitted
    as student ``<student>``. The returned score is the autograded (code cell)
    score from the gradebook; the hand-graded answer is not included.
    """
    from nbgrader.api import Gradebook  # imported here: only the student image has it

    course = copy_course(Path(workdir), assignments)
    fixtures = sorted(p for p in (course / "fixtures" / FIXTURE_ASSIGNMENT).glob("*.ipynb"))
    if not fixtures:
        raise FileNotFoundError(f"no fixtures under {course / 'fixtures' / FIXTURE_ASSIGNMENT}")

    _nbgrader(course, "generate_assignment", FIXTURE_ASSIGNMENT, "--force")
    for nb in fixtures:
        student = nb.stem
        _nbgrader(course, "db", "student", "add", student)
        dest = course / "submitted" / student / FIXTURE_ASSIGNMENT
        dest.mkdir(parents=True)
        shutil.copy(nb, dest / f"{FIXTURE_ASSIGNMENT}.ipynb")
    _nbgrader(course, "autograde", FIXTURE_ASSIGNMENT)

    scores: dict[str, float] = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for nb in fixtures:
            sub = gb.find_submission_notebook(FIXTURE_ASSIGNMENT, FIXTURE_ASSIGNMENT, nb.stem)
            scores[nb.stem] = float(sub.code_score)
    return scores


def sources_report(workdir: Path, assignments: Path = ASSIGNMENTS) -> dict:
    """Validate and release each source, autograde the fixtures; a failure is kept as its message."""
    report: dict = {"sources": {}}
    for name in EXERCISES:
        try:
            course = copy_course(Path(workdir) / name, assignments)
            validated = _nbgrader(course, "validate", f"source/{name}/{name}.ipynb").stdout
            _nbgrader(course, "generate_assignment", name, "--force")
            released = (course / "release" / name / f"{name}.ipynb").read_text()
            report["sources"][name] = {"validate": validated, "released": released}
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:  # each test fails with its own reason
            report["sources"][name] = {"error": f"{type(exc).__name__}: {exc}"}
    try:
        report["scores"] = autograde_fixtures(Path(workdir) / "fixtures", assignments)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        report["scores_error"] = f"{type(exc).__name__}: {exc}"
    return report


def in_image_script() -> str:
    """The helpers above as one script: ``python3 -c SCRIPT ASSIGNMENTS WORKDIR`` prints the report."""
    constants = {"EXERCISES": EXERCISES, "FIXTURE_ASSIGNMENT": FIXTURE_ASSIGNMENT,
                 "_NBGRADER_OUTPUTS": _NBGRADER_OUTPUTS}
    return "\n".join([
        "from __future__ import annotations",
        "import json, os, shutil, subprocess, sys",
        "from pathlib import Path",
        *(f"{name} = {value!r}" for name, value in constants.items()),
        "ASSIGNMENTS = Path(sys.argv[1])",
        *(inspect.getsource(helper) for helper in (_nbgrader, copy_course, autograde_fixtures, sources_report)),
        "print(json.dumps(sources_report(Path(sys.argv[2]))))",
    ])


@pytest.fixture(scope="module")
def report(tmp_path_factory, docker_client) -> dict:
    """Run the checks once in a throwaway student-image container; removed (by label too) afterwards."""
    classroom = config.load(write_classroom(tmp_path_factory.mktemp("nbgrader-sources")))
    instance, uid = classroom.spawner.instance, classroom.spawner.uid_base
    container = docker_client.containers.run(
        image=built_image(classroom, docker_client),
        command=["python3", "-c", in_image_script(), ASSIGNMENTS_MOUNT, f"{HOME}/work"],
        volumes={str(ASSIGNMENTS): {"bind": ASSIGNMENTS_MOUNT, "mode": "ro"}},
        tmpfs={HOME: f"rw,exec,nosuid,nodev,size=1g,uid={uid},gid={STUDENT_GID},mode=0700"},
        working_dir=HOME,
        mem_limit="4g",
        pids_limit=1024,
        detach=True,
        **engine.throwaway(instance, "nbgrader-sources", user=f"{uid}:{STUDENT_GID}"),
    )
    try:
        exit_code = container.wait(timeout=CONTAINER_TIMEOUT).get("StatusCode")
        stdout = container.logs(stdout=True, stderr=False).decode(errors="replace").strip()
        stderr = container.logs(stdout=False, stderr=True, tail=30).decode(errors="replace")
    finally:
        container.remove(force=True)
    assert exit_code == 0 and stdout, f"the check container exited {exit_code}:\n{stderr}"
    return json.loads(stdout.splitlines()[-1])


@pytest.mark.parametrize("name", EXERCISES)
def test_source_validates_and_releases(name, report):
    """The source notebook passes its own tests and can be released."""
    source = report["sources"][name]
    assert "error" not in source, source.get("error")
    assert "Success! Your notebook passes all the tests." in source["validate"], source["validate"]
    released = source["released"]
    assert "### BEGIN SOLUTION" not in released
    assert "### BEGIN HIDDEN TESTS" not in released
    assert "raise NotImplementedError()" in released


def test_autograded_fixture_scores(report):
    """correct / partial / broken submissions get the documented scores."""
    assert "scores_error" not in report, report.get("scores_error")
    expected = json.loads((FIXTURE_DIR / "expected.json").read_text())
    assert report["scores"] == pytest.approx({k: float(v) for k, v in expected.items()})
