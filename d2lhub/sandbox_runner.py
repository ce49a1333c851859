"""Runs inside a throwaway grading container (the student image's Python), never on the host.

Usage: python3 sandbox_runner.py NOTEBOOK CELL_TIMEOUT OUTPUT_LIMIT

Copies the read-only submission in /srv/submission to a scratch folder, executes
NOTEBOOK there with nbgrader's own `Execute` preprocessor (so grading behaves as
`nbgrader autograde` does), and writes one JSON object to the original stdout:
{"notebook": <executed notebook>, "reason": <why execution stopped early, or null>}.
The kernel's fds 1 and 2 point at /dev/null, so nothing the student prints or
writes at the C level can corrupt that answer, and outputs past OUTPUT_LIMIT
bytes are dropped as they arrive instead of piling up in memory.
"""

import json
import os
import shutil
import sys

SUBMISSION = "/srv/submission"
SCRATCH = "/tmp/work"


def main() -> None:
    name, cell_timeout, output_limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    answer = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)

    import nbformat
    from nbgrader.preprocessors import Execute

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
    notebook = nbformat.read(os.path.join(SCRATCH, name), as_version=4)
    reason = None
    try:
        CappedExecute(timeout=cell_timeout).preprocess(notebook, {"metadata": {"path": SCRATCH}})
    except BaseException as exc:  # the kernel died (out of memory, killed): keep what ran
        reason = f"execution stopped: {type(exc).__name__}: {str(exc)[:300]}"
    json.dump({"notebook": notebook, "reason": reason}, answer)
    answer.close()


if __name__ == "__main__":
    main()
