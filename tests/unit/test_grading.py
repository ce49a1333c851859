"""The host's side of sandboxed execution: only outputs come back, and cells that did not run fail."""

import nbformat

from d2lhub.grading.sandbox import Run, merge_run


def notebook():
    return nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("intro"),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("assert x == 1"),
    ])


def executed(nb, count=2):
    ran = nbformat.reads(nbformat.writes(nb), as_version=4)
    for number, cell in enumerate(c for c in ran.cells if c.cell_type == "code"):
        if number < count:
            cell.execution_count = number + 1
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ok\n")]
    return ran


def test_outputs_are_taken_when_everything_ran():
    nb = notebook()
    assert merge_run(nb, Run(executed(nb), None)) is None
    assert [c.execution_count for c in nb.cells[1:]] == [1, 2]
    assert all(o.output_type == "stream" for c in nb.cells[1:] for o in c.outputs)


def test_cells_that_did_not_run_fail_with_the_reason():
    nb = notebook()
    reason = merge_run(nb, Run(executed(nb, count=1), "execution stopped: DeadKernelError"))
    assert reason == "execution stopped: DeadKernelError"
    assert nb.cells[0].source.startswith("**Autograder:**")  # the note students read in feedback
    test_cell = nb.cells[-1]
    assert test_cell.outputs[-1].output_type == "error" and test_cell.outputs[-1].ename == "NotExecuted"


def test_a_notebook_with_changed_sources_is_not_trusted():
    nb = notebook()
    forged = executed(nb)
    forged.cells[2].source = "pass"  # a test cell rewritten inside the sandbox
    reason = merge_run(nb, Run(forged, None))
    assert "is trusted" in reason and "different notebook" in reason
    assert nb.cells[-1].source == "assert x == 1"
    assert nb.cells[-1].outputs[-1].ename == "NotExecuted"


def test_a_run_killed_from_outside_fails_every_code_cell():
    nb = notebook()
    merge_run(nb, Run(None, "the notebook ran past the 60 s limit and was stopped"))
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs[-1].ename == "NotExecuted" for c in code)
