"""Autograde's sandbox: each sanitized notebook runs in a throwaway container of the student
image (no network, capped memory, CPU, processes, time and output, read-only inputs), and
only its outputs come back into the notebook nbgrader grades.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import docker
import nbformat
import requests
from nbgrader.api import Gradebook
from nbgrader.preprocessors import NbGraderPreprocessor

from d2lhub import engine
from d2lhub.config import Classroom
from d2lhub.studentimage import IN_IMAGE_DIR, student_image

RUNNER = IN_IMAGE_DIR / "sandbox_runner.py"
RUNNER_MOUNT = "/opt/d2lhub-sandbox/run.py"
SANDBOX_USER = "0:0"  # with every capability dropped but the two the runner needs to run the kernel as nobody
SANDBOX_CAPS = ["SETUID", "SETGID", "KILL"]  # KILL: to interrupt and stop a kernel of another uid


@dataclass
class Run:
    notebook: dict | None
    reason: str | None


class Sandbox:
    """Executes notebooks in throwaway containers of the student image, `jobs` at a time."""

    def __init__(self, classroom: Classroom, course: Path, jobs: int, client: docker.DockerClient | None = None):
        self.classroom = classroom
        self.course = course  # the offering's course folder: its release holds the locked cells
        self.limits = classroom.grading
        self.client = client or engine.docker_client(timeout=self.limits.wall_clock + 60, max_pool_size=max(jobs, 10))
        self.image = student_image(classroom, self.client)
        self.pool = ThreadPoolExecutor(jobs, thread_name_prefix="sandbox")
        self.runs: dict[tuple[str, str], Future] = {}

    def submit(self, student: str, notebook: str, nb, folder: str) -> None:
        text = nbformat.writes(nb)
        self.runs[(student, notebook)] = self.pool.submit(self.execute, text, notebook, Path(folder))

    def result(self, student: str, notebook: str, nb, folder: str) -> Run:
        if (student, notebook) not in self.runs:
            self.submit(student, notebook, nb, folder)
        return self.runs.pop((student, notebook)).result()

    def execute(self, text: str, notebook: str, folder: Path) -> Run:
        limits = self.limits
        with tempfile.TemporaryDirectory(prefix="d2lhub-grade-") as tmp:
            submission = Path(tmp) / "submission"
            shutil.copytree(folder, submission, ignore=shutil.ignore_patterns("*.ipynb"), symlinks=False)
            (submission / f"{notebook}.ipynb").write_text(text)
            for path in [Path(tmp), submission, *submission.rglob("*")]:
                path.chmod(0o755 if path.is_dir() else 0o644)
            container = self.client.containers.create(
                self.image,
                command=["python3", RUNNER_MOUNT, f"{notebook}.ipynb", str(limits.cell_timeout), str(limits.output_limit)],
                name=f"{self.classroom.spawner.instance}-grade-{uuid.uuid4().hex[:10]}",
                environment={
                    "HOME": "/tmp",
                    "JUPYTER_RUNTIME_DIR": "/tmp/runtime",
                    "IPYTHONDIR": "/tmp/ipython",
                    "MPLCONFIGDIR": "/tmp/mpl",
                    "NBGRADER_EXECUTION": "autograde",
                },
                mem_limit=limits.memory,
                memswap_limit=limits.memory,
                nano_cpus=int(limits.cpu * 1e9),
                pids_limit=limits.pids,
                read_only=True,
                tmpfs={"/tmp": "size=256m,mode=1777"},
                volumes={
                    str(submission): {"bind": "/srv/submission", "mode": "ro"},
                    str(RUNNER): {"bind": RUNNER_MOUNT, "mode": "ro"},
                },
                **engine.throwaway(self.classroom.spawner.instance, "autograde", user=SANDBOX_USER, cap_add=SANDBOX_CAPS),
            )
            try:
                container.start()
                timed_out = False
                try:
                    container.wait(timeout=limits.wall_clock)
                except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                    timed_out = True
                    container.kill()
                container.reload()
                oom = container.attrs["State"].get("OOMKilled")
                answer = container.logs(stdout=True, stderr=False)
            finally:
                container.remove(force=True)
        if timed_out:
            return Run(None, f"the notebook ran past the {limits.wall_clock} s limit and was stopped")
        try:
            result = json.loads(answer)
        except ValueError:
            why = "ran out of memory" if oom else "was stopped before it finished (process or memory limit?)"
            return Run(None, f"the notebook {why}")
        reason = result.get("reason")
        if reason and oom:
            reason = f"the notebook ran out of memory ({limits.memory // 2**20} MiB); {reason}"
        return Run(result.get("notebook"), reason)


def merge_run(nb, run: Run) -> str | None:
    """Take only outputs from the sandbox (never sources), fail every cell that did not run."""
    reason = run.reason
    executed = run.notebook["cells"] if run.notebook else None
    if executed is not None and [c.get("source") for c in executed] != [c.source for c in nb.cells]:
        executed, reason = None, "the sandbox returned a different notebook; nothing it ran is trusted"
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        ran = executed[index] if executed else {}
        cell.outputs = [nbformat.from_dict(o) for o in ran.get("outputs", [])]
        cell.execution_count = ran.get("execution_count")
        if cell.execution_count is None:
            cell.outputs.append(
                nbformat.v4.new_output(
                    "error", ename="NotExecuted", evalue=reason or "this cell did not run",
                    traceback=[f"NotExecuted: {reason or 'this cell did not run'}"],
                )
            )
    if any(o.get("ename") == "CellTimeoutError" for c in nb.cells if c.cell_type == "code" for o in c.outputs):
        reason = "; ".join(filter(None, [reason, "a cell ran past the per-cell time limit and was interrupted"]))
    if reason:
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(f"**Autograder:** {reason}"))
    return reason


def missing_grade_cells(nb, resources) -> list[str]:
    """Test and answer cells the gradebook knows but the submission deleted (nbgrader scores them 0)."""
    info = resources["nbgrader"]
    with Gradebook(info["db_url"]) as gb:
        known = {cell.name for cell in gb.find_notebook(info["notebook"], info["assignment"]).grade_cells}
    present = {cell.metadata.get("nbgrader", {}).get("grade_id") for cell in nb.cells}
    return sorted(known - present)


def edited_locked_cells(course: Path, nb_name: str, student: str, assignment: str) -> list[str]:
    """Locked cells (tests, instructions) whose submitted source differs from the release; nbgrader restores them."""
    def locked(path: Path) -> dict[str, str]:
        cells = nbformat.read(path, as_version=4).cells
        return {c.metadata["nbgrader"]["grade_id"]: c.source for c in cells if c.metadata.get("nbgrader", {}).get("locked")}

    released = locked(course / "release" / assignment / f"{nb_name}.ipynb")
    submitted = locked(course / "submitted" / student / assignment / f"{nb_name}.ipynb")
    return sorted(k for k, source in submitted.items() if k in released and released[k] != source)


class SandboxSchedule(NbGraderPreprocessor):
    """First pass: hand the sanitized notebook to the sandbox pool and move on."""

    def __init__(self, sandbox: Sandbox, **kwargs):
        super().__init__(**kwargs)
        self.sandbox = sandbox

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        self.sandbox.submit(info["student"], info["notebook"], nb, resources["metadata"]["path"])
        return nb, resources


class SandboxExecute(NbGraderPreprocessor):
    """Second pass, in place of nbgrader's Execute: the notebook as the sandbox ran it."""

    def __init__(self, sandbox: Sandbox, notes: dict[str, str], **kwargs):
        super().__init__(**kwargs)
        self.sandbox = sandbox
        self.notes = notes

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        run = self.sandbox.result(info["student"], info["notebook"], nb, resources["metadata"]["path"])
        reason = merge_run(nb, run)
        missing = missing_grade_cells(nb, resources)
        if missing:
            reason = "; ".join(filter(None, [reason, f"graded cells deleted, scored 0: {', '.join(missing)}"]))
        edited = edited_locked_cells(self.sandbox.course, info["notebook"], info["student"], info["assignment"])
        if edited:
            reason = "; ".join(filter(None, [reason, f"edited locked cells were restored before grading: {', '.join(edited)}"]))
        if reason:
            self.notes[info["student"]] = reason
        return nb, resources
