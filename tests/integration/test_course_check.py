"""`d2lhub course check` runs every chapter in a student-like container and names what fails."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from harness import REPO, write_classroom

from d2lhub import config
from d2lhub.course.build import build_course
from d2lhub.course.manifest import MANIFEST_NAME, CourseManifest
from d2lhub.state import course_dir

pytestmark = pytest.mark.integration

BROKEN_CELL = "```{.python .input}\n%%tab mxnet\nundefined_name_for_check + 1\n```\n\n"


def d2lhub(*args: str) -> subprocess.CompletedProcess:
    """The CLI as an admin runs it; a wide terminal so the table's rows stay on one line."""
    return subprocess.run(
        [sys.executable, "-m", "d2lhub.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=1200,
    )


def built_classroom(folder, source) -> config.Classroom:
    path = write_classroom(folder, course={"source": str(source)})
    classroom = config.load(path)
    build_course(classroom.course.source, course_dir(classroom))
    return path, classroom


def test_every_demo_chapter_passes(tmp_path, docker_client):
    path, classroom = built_classroom(tmp_path, REPO / "course")
    result = d2lhub("course", "check", "-c", str(path))
    print(result.stdout)  # the table, for the test log
    assert result.returncode == 0, result.stderr
    manifest = CourseManifest.load(course_dir(classroom) / MANIFEST_NAME)
    for chapter in manifest.chapters:
        row = re.search(rf"{re.escape(chapter.path)}\s*│\s*ok\s*│\s*[\d.]+", result.stdout)
        assert row, f"{chapter.path} has no passing row in\n{result.stdout}"
    assert re.search(r"lenet\.ipynb\s*│\s*ok", result.stdout)


def test_broken_chapter_fails_the_check_by_name(tmp_path, docker_client):
    book = tmp_path / "book"
    shutil.copytree(REPO / "course", book)
    index = book / "index.md"  # only the first part, to keep the run short
    index.write_text(re.sub(r"chapter_(linear|multilayer|convolutional)[^\n]*\n", "", index.read_text()))
    chapter = book / "chapter_preliminaries/autograd.md"
    text = chapter.read_text()
    first_code = text.index("```{.python .input}")
    chapter.write_text(text[:first_code] + BROKEN_CELL + text[first_code:])
    path, _ = built_classroom(tmp_path, book)
    result = d2lhub("course", "check", "-c", str(path), "--jobs", "2")
    print(result.stdout, result.stderr)
    assert result.returncode == 1
    assert re.search(r"ndarray\.ipynb\s*│\s*ok", result.stdout)
    assert re.search(r"autograd\.ipynb\s*│\s*broken: cell 1: NameError", result.stdout)
    failure = re.search(r"broken: chapter_preliminaries/autograd\.ipynb: (.*)", result.stderr)
    assert failure, result.stderr
    assert "cell 1: NameError: name 'undefined_name_for_check' is not defined" in failure.group(1)
    assert "1 of 3 chapters failed" in result.stderr
    leftovers = docker_client.containers.list(
        all=True, filters={"label": [f"org.d2lhub.instance={config.load(path).spawner.instance}"]}
    )
    assert leftovers == []


def test_each_outcome_named_in_the_table_and_the_report(tmp_path, docker_client):
    """One fixture chapter per outcome: ok (it opens an image and a text file from its code), needs data,
    needs 2 GPUs (skipped: the profile gives none), timed out, broken."""
    path = write_classroom(tmp_path, course={"source": str(REPO / "tests/fixtures/outcomes_book")})
    built = d2lhub("course", "build", "-c", str(path))
    assert built.returncode == 0, built.stderr
    assert "warning: chapter_outcomes/opens_files.ipynb: its code opens ../img/never_drawn.png, which is not in the book" in " ".join(built.stderr.split())
    course = course_dir(config.load(path))
    manifest = CourseManifest.load(course / MANIFEST_NAME)
    assert {chapter.path: chapter.gpus for chapter in manifest.chapters}["chapter_outcomes/two_gpus.ipynb"] == 2
    assert (course / "img/dot.svg").is_file() and (course / "data/notes.txt").read_text() == "lantern\nkettle\n"
    report = tmp_path / "ci/check.json"
    result = d2lhub("course", "check", "-c", str(path), "--jobs", "2", "--timeout", "10", "--report", str(report))
    print(result.stdout, result.stderr)
    assert result.returncode == 1
    rows = {
        "opens_files": r"ok",
        "needs_data": r"needs data: d2lhub-absent",
        "two_gpus": r"needs 2 GPUs",
        "slow": r"timed out",
        "broken": r"broken: cell 2: NameError: name 'kettles' is not defined",
    }
    for chapter, outcome in rows.items():
        assert re.search(rf"{chapter}\.ipynb\s*│\s*{outcome}", result.stdout), chapter
    document = json.loads(report.read_text())
    assert document["counts"] == {"ok": 2, "needs data": 1, "needs GPUs": 1, "timed out": 1, "broken": 1}
    labels = {entry["chapter"].split("/")[-1]: entry["label"] for entry in document["chapters"]}
    assert labels["two_gpus.ipynb"] == "needs 2 GPUs" and labels["needs_data.ipynb"] == "needs data: d2lhub-absent"
    assert [entry["seconds"] for entry in document["chapters"] if entry["outcome"] == "needs GPUs"] == [0.0]
    assert "3 of 6 chapters failed" in result.stderr
