"""The one error the grading steps raise: the CLI prints its message as the one-line reason."""


class GradingError(Exception):
    """A grading step failed as a whole; the message says which and why."""
