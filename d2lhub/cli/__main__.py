"""`python -m d2lhub.cli`: how the hub runs the lecture-prestart service."""

from d2lhub.cli import app

app()
