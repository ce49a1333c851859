"""Runs inside a throwaway grading container (the student image's Python), never on the host.

Usage: python3 sandbox_runner.py NOTEBOOK CELL_TIMEOUT OUTPUT_LIMIT

Copies the read-only submission in /srv/submission to a scratch folder, executes
NOTEBOOK there with nbgrader's own `Execute` preprocessor (so grading behaves as
`nbgrader autograde` does), and writes one JSON object to the original stdout:
{"notebook": <executed notebook>, "reason": <why execution stopped early, or null>}.
The kernel's fds 1 and 2 point at /dev/null, so nothing the student prints or
writes at the C level can corrupt that answer, and outputs past OUTPUT_LIMIT
bytes are dropped as they arrive instead of piling up in memory.

The runner starts as root holding only CAP_SETUID, CAP_SETGID and CAP_KILL; the kernel runs as
nobody: with the runner's uid, student code could open the runner's answer pipe
through /proc, write a forged "all tests pass" notebook into it and kill the runner.
"""

import importlib
import importlib.util
import json
import os
import shutil
import sys
import types

SUBMISSION = "/srv/submission"
SCRATCH = "/tmp/work"
RUNTIME = "/tmp/runtime"
KERNEL_USER = 65534  # nobody


def nbgrader_execute():
    """nbgrader's Execute, without running nbgrader's package __init__.

    That __init__ imports nbgrader's server extensions, the exchange and the gradebook (about
    1 CPU-s) which a run of one notebook never uses; this loads the two modules it needs.
    """
    for package in ("nbgrader", "nbgrader.preprocessors"):
        shell = types.ModuleType(package)
        shell.__path__ = list(importlib.util.find_spec(package).submodule_search_locations)
        sys.modules[package] = shell
    shell.NbGraderPreprocessor = importlib.import_module("nbgrader.preprocessors.base").NbGraderPreprocessor
    return importlib.import_module("nbgrader.preprocessors.execute").Execute


def main() -> None:
    name, cell_timeout, output_limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    answer = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)

    import nbformat
    from jupyter_client.manager import AsyncKernelManager

    Execute = nbgrader_execute()

    class KernelAsNobody(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            drop = ["setpriv", f"--reuid={KERNEL_USER}", f"--regid={KERNEL_USER}", "--clear-groups", "--"]
            return drop + super().format_kernel_cmd(extra_arguments)

        def write_connection_file(self, **kwargs):
            super().write_connection_file(**kwargs)
            os.chmod(self.connection_file, 0o644)  # the kernel, now another uid, must read its ports and key

    class CappedExecute(Execute):
        kept = 0

        def output(self, outs, msg, display_id, cell_index):
            size = len(json.dumps(msg.get("content", {})))
            if self.kept + size > output_limit:
                if self.kept <= output_limit:
                    self.kept = output_limit + 1
                    outs.append(nbformat.v4.new_output("stream", name="stderr", text=f"[d2lhub: output past {output_limit} bytes dropped]\n"))
                return None
            self.kept += size
            return super().output(outs, msg, display_id, cell_index)

    shutil.copytree(SUBMISSION, SCRATCH)
    for folder, dirs, files in os.walk(SCRATCH):  # the kernel's working copy is its to change
        os.chmod(folder, 0o777)
        for name_in_folder in files:
            os.chmod(os.path.join(folder, name_in_folder), 0o666)
    os.makedirs(RUNTIME, mode=0o755, exist_ok=True)
    notebook = nbformat.read(os.path.join(SCRATCH, name), as_version=4)
    reason = None
    try:
        CappedExecute(timeout=cell_timeout, kernel_manager_class=KernelAsNobody).preprocess(notebook, {"metadata": {"path": SCRATCH}})
    except BaseException as exc:  # the kernel died (out of memory, killed): keep what ran
        reason = f"execution stopped: {type(exc).__name__}: {str(exc)[:300]}"
    json.dump({"notebook": notebook, "reason": reason}, answer)
    answer.close()


if __name__ == "__main__":
    main()
