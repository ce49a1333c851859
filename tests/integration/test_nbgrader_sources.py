"""Integration check of the nbgrader exercise sources in ``assignments/``.

Everything runs on a temporary copy of ``assignments/`` so that nbgrader's
``gradebook.db``, ``release/``, ``submitted/`` and ``autograded/`` never end up
in the repository. Needs ``nbgrader`` and an importable ``mxnet`` (the notebook
kernel is the ``python3`` kernelspec of the running environment); the test is
skipped otherwise. ``autograde_fixtures`` is kept free of pytest so that the
container smoke test can call it directly.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Lives with the other integration tests (it needs the student image's Python:
# nbgrader + mxnet), but needs no Docker engine itself; outside the image run it
# with ``pytest --noconftest tests/integration/test_nbgrader_sources.py``.
pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ASSIGNMENTS = REPO / "assignments"
EXERCISES = ["ex01-tensors-autograd", "ex02-linear-regression", "ex03-classifier"]
FIXTURE_ASSIGNMENT = "ex01-tensors-autograd"
FIXTURE_DIR = ASSIGNMENTS / "fixtures" / FIXTURE_ASSIGNMENT
# nbgrader output that must never be copied from (or left in) the repository
_NBGRADER_OUTPUTS = ("gradebook.db", "release", "submitted", "autograded",
                     "feedback", "outbound", "inbound", ".ipynb_checkpoints")


def _nbgrader(course: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``nbgrader <args>`` with the current interpreter inside ``course``."""
    cmd = [sys.executable, "-m", "nbgrader", *args]
    # nbgrader 0.9.6 creates gradebook.db by running the ``alembic`` executable
    # found on PATH, so the interpreter's bin/ must be on PATH even when pytest
    # is started as /path/to/venv/bin/python without activating the venv.
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    proc = subprocess.run(cmd, cwd=course, env=env, capture_output=True, text=True,
                          timeout=timeout)
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
    from nbgrader.api import Gradebook  # imported here: optional dependency

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


def _require_tools():
    pytest.importorskip("nbgrader", reason="nbgrader is not installed")
    pytest.importorskip("mxnet", reason="mxnet cannot be imported (needs mxnet==1.9.1, numpy<1.24)")


@pytest.mark.parametrize("name", EXERCISES)
def test_source_validates_and_releases(name, tmp_path):
    """The source notebook passes its own tests and can be released."""
    _require_tools()
    course = copy_course(tmp_path)
    proc = _nbgrader(course, "validate", f"source/{name}/{name}.ipynb")
    assert "Success! Your notebook passes all the tests." in proc.stdout, proc.stdout
    _nbgrader(course, "generate_assignment", name, "--force")
    released = (course / "release" / name / f"{name}.ipynb").read_text()
    assert "### BEGIN SOLUTION" not in released
    assert "### BEGIN HIDDEN TESTS" not in released
    assert "raise NotImplementedError()" in released


def test_autograded_fixture_scores(tmp_path):
    """correct / partial / broken submissions get the documented scores."""
    _require_tools()
    expected = json.loads((FIXTURE_DIR / "expected.json").read_text())
    scores = autograde_fixtures(tmp_path)
    assert scores == pytest.approx({k: float(v) for k, v in expected.items()})
