"""nbgrader configuration for the d2lhub course (MXNet edition of D2L).

Run nbgrader from this folder (or a copy of it): the course root is always the
folder that holds this file.
"""
import os

c = get_config()  # noqa: F821  (provided by traitlets when the file is loaded)

c.CourseDirectory.course_id = "d2l"
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.source_directory = "source"

# What students see in place of the solution regions.
c.ClearSolutions.code_stub = {
    "python": "# YOUR CODE HERE\nraise NotImplementedError()",
}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Seconds allowed per cell when validating / autograding. nbgrader's Execute
# preprocessor subclasses nbconvert's ExecutePreprocessor, so this setting is
# inherited (Execute's own default is 30 s).
c.ExecutePreprocessor.timeout = 120
