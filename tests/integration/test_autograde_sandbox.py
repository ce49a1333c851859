"""Hostile submissions are graded, each with a reason, in real sandbox containers; the batch finishes
and the honest submissions beside them get their expected points."""

from __future__ import annotations

import uuid

import nbformat
import pytest
import yaml
from harness import REPO, TEST_PREFIX, place_collected, remove_labelled

from d2lhub import config
from d2lhub.grading import layout
from d2lhub.grading import workflow as grading

pytestmark = pytest.mark.integration
NAME = "ex01-tensors-autograd"
FIXTURES = REPO / "assignments" / "fixtures" / NAME


def with_make_tensor(code: str):
    nb = nbformat.read(FIXTURES / "correct.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "def make_tensor" in c.source)
    cell.source = code
    return nbformat.writes(nb)


def without_cell(grade_id: str) -> str:
    nb = nbformat.read(FIXTURES / "correct.ipynb", as_version=4)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != grade_id]
    return nbformat.writes(nb)


def with_edited_test(grade_id: str) -> str:
    nb = nbformat.read(FIXTURES / "broken.ipynb", as_version=4)
    next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id).source = "pass"
    return nbformat.writes(nb)


# Forges the sandbox's answer: an unexecuted copy of itself ("no errors": full marks) written into the
# runner's answer pipe, then kills the runner so that copy is all the host reads. The kernel runs as
# another uid than the runner, so both steps are refused and the notebook is graded as it is.
FORGE = f"""import json, os, signal
runner = os.getppid()
nb = json.load(open("{NAME}.ipynb"))
for cell in nb["cells"]:
    cell["source"] = "".join(cell["source"])
    if cell["cell_type"] == "code":
        cell["outputs"], cell["execution_count"] = [], 1
forged = json.dumps({{"notebook": nb, "reason": None}})
try:
    for fd in os.listdir(f"/proc/{{runner}}/fd"):
        if os.readlink(f"/proc/{{runner}}/fd/{{fd}}").startswith("pipe:"):
            with open(f"/proc/{{runner}}/fd/{{fd}}", "w") as pipe:
                pipe.write(forged)
    os.kill(runner, signal.SIGKILL)
except OSError as exc:
    print("refused:", type(exc).__name__)
"""

# student -> (notebook text, expected points, a word the reason must carry, or None for no reason)
SUBMISSIONS = {
    "correct": ((FIXTURES / "correct.ipynb").read_text(), 9, None),
    "partial": ((FIXTURES / "partial.ipynb").read_text(), 6, None),
    "looper": (with_make_tensor("while True:\n    pass"), 7, "time limit"),
    # A flood fills the sandbox's memory with queued output before the cell limit: zero, with the reason.
    "flooder": (with_make_tensor("while True:\n    print('x' * 10000)"), None, ""),
    "hog": (with_make_tensor("hog = []\nwhile True:\n    hog.append(bytearray(64 * 2**20))"), 0, "stopped"),
    "forker": (with_make_tensor("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"), None, ""),
    "deleter": (without_cell("test-grad"), 6, "deleted"),
    "editor": (with_edited_test("test-make-tensor"), 4, "restored"),
    "garbage": ("{this is not json", 0, "not a valid notebook"),
    "forger": (with_make_tensor(FORGE), 7, None),
}


@pytest.fixture(scope="module")
def classroom(tmp_path_factory, docker_client):
    folder = tmp_path_factory.mktemp("sandbox")
    instance = f"{TEST_PREFIX}{uuid.uuid4().hex[:8]}"
    path = folder / "classroom.yaml"
    path.write_text(yaml.safe_dump({
        "course": {"id": "d2l", "source": str(REPO / "course"), "assignments": str(REPO / "assignments")},
        "hub": {"state_dir": str(folder / "state")},
        "images": {"student": {"name": "d2lhub/student", "context": str(REPO / "images/student")}},
        "spawner": {"instance": instance},
        "grading": {"cell_timeout": 40, "wall_clock": 240, "memory": "1G", "pids": 128, "output_limit": "256K"},
    }))
    yield config.load(path)
    remove_labelled(docker_client, lambda value: value == instance)


def test_hostile_submissions_are_graded_with_reasons(classroom, docker_client):
    grading.release(classroom, classroom.offerings[0], NAME)
    for student, (text, _, _) in SUBMISSIONS.items():
        place_collected(classroom, student, NAME, text)

    graded = {g.student: g for g in grading.autograde(classroom, classroom.offerings[0], NAME, jobs=2)}

    assert set(graded) == set(SUBMISSIONS)
    for student, (_, points, word) in SUBMISSIONS.items():
        result = graded[student]
        if points is not None:
            assert result.score == points, (student, result)
        else:  # how far it got depends on which limit hits first; never full marks, always a reason
            assert result.score < 9 and result.reason, (student, result)
        if word is None:
            assert result.reason is None, (student, result)
        else:
            assert result.reason and word in result.reason, (student, result)
    # Outputs were capped in the sandbox: the flood left a small notebook behind.
    flooded = layout.course_root(classroom) / "autograded" / "flooder" / NAME / f"{NAME}.ipynb"
    assert flooded.stat().st_size < 1_000_000
    # No grading container outlives the batch.
    instance = classroom.spawner.instance
    assert not docker_client.containers.list(all=True, filters={"label": f"org.d2lhub.instance={instance}"})

    released = grading.feedback(classroom, classroom.offerings[0], NAME)
    assert set(released) == set(SUBMISSIONS)
    garbage = layout.course_root(classroom) / "feedback" / "garbage" / NAME / f"{NAME}.html"
    assert "not a valid notebook" in garbage.read_text()
    hog = (layout.course_root(classroom) / "feedback" / "hog" / NAME / f"{NAME}.html").read_text()
    assert "Autograder:" in hog
