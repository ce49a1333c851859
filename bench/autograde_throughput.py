"""Scenario 5 of `make bench`: autograde throughput on one batch of submissions.

The same collected submissions (correct, partial and broken answers to exercise 1, in turn)
are graded three ways, each on a fresh copy of the course folder:
- d2lhub's sandboxed autograde with `--jobs 1`;
- d2lhub's sandboxed autograde with the default jobs (one per core);
- plain `nbgrader autograde` in one container of the same student image: what a course
  without d2lhub runs, serially and unsandboxed.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from harness import REPO, place_collected, remove_labelled, write_classroom

from d2lhub import config, labels
from d2lhub.grading import layout
from d2lhub.grading import workflow as grading

NAME = "ex01-tensors-autograd"
FIXTURES = REPO / "assignments" / "fixtures" / NAME
COURSE_MOUNT = "/srv/course"


def collected_course(folder: Path, submissions: int):
    """A classroom whose course folder holds `submissions` collected submissions of exercise 1."""
    classroom = config.load(write_classroom(folder))
    grading.release(classroom, classroom.offerings[0], NAME)
    answers = sorted(FIXTURES.glob("*.ipynb"))
    for index in range(submissions):
        place_collected(classroom, f"bench{index:03d}", NAME, answers[index % len(answers)].read_text())
    return classroom


def fresh_copy(classroom, pristine: Path) -> None:
    """Put the course folder back as collected, so every way grades the same, ungraded, batch."""
    root = layout.course_root(classroom)
    shutil.rmtree(root)
    shutil.copytree(pristine, root, symlinks=True)


def plain_nbgrader(client, image: str, course: Path) -> float:
    """Seconds for stock `nbgrader autograde` over the whole batch, in one container."""
    (course / "nbgrader_config.py").write_text(
        (REPO / "assignments" / "nbgrader_config.py").read_text()
        + "\nc.Autograde.create_student = True\nc.Exchange.root = '/tmp/exchange'\n"
    )
    started = time.monotonic()
    output = client.containers.run(
        image,
        ["nbgrader", "autograde", NAME, "--force"],
        working_dir=COURSE_MOUNT,
        user="0:0",
        environment={"HOME": "/tmp"},
        volumes={str(course): {"bind": COURSE_MOUNT, "mode": "rw"}},
        network_mode="none",
        labels={labels.INSTANCE: "d2lbench-plain", "org.d2lhub.role": "autograde"},
        remove=True,
        stderr=True,
    )
    elapsed = time.monotonic() - started
    if b"Traceback" in output:
        raise RuntimeError(f"plain nbgrader autograde failed:\n{output.decode()[-2000:]}")
    return elapsed


def measure(results, client, work: Path, submissions: int, image: str) -> None:
    classroom = collected_course(work / "autograde", submissions)
    pristine = work / "autograde-pristine"
    shutil.copytree(layout.course_root(classroom), pristine, symlinks=True)
    default_jobs = classroom.grading.jobs or os.cpu_count() or 1
    rates = {}
    try:
        for label, jobs in (("--jobs 1", 1), (f"default (--jobs {default_jobs})", default_jobs)):
            fresh_copy(classroom, pristine)
            started = time.monotonic()
            graded = grading.autograde(classroom, classroom.offerings[0], NAME, jobs=jobs)
            elapsed = time.monotonic() - started
            if len(graded) != submissions:
                raise RuntimeError(f"autograde {label} graded {len(graded)} of {submissions}")
            rates[label] = submissions / elapsed * 60
        fresh_copy(classroom, pristine)
        plain = submissions / plain_nbgrader(client, image, layout.course_root(classroom)) * 60
    finally:
        remove_labelled(client, lambda value: value in {classroom.spawner.instance, "d2lbench-plain"})
    for label, rate in rates.items():
        results.add("5 autograde", f"throughput, {label}", f"{rate:.1f} submissions/min",
                    f"{plain:.1f} /min plain nbgrader autograde",
                    f"{submissions} submissions; sandboxed: one capped container each")
