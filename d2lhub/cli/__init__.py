"""The `d2lhub` command: thin verbs over the packages; bad input exits 2 with one line.

One module per group of verbs; each loads the heavy parts (nbgrader, d2lbook) only when one
of its verbs runs, so `d2lhub status` starts quickly.
"""

from __future__ import annotations

import typer

from d2lhub.cli import classroom, course, grading, lti, scaleout

app = typer.Typer(help="Run and manage a Dive into Deep Learning classroom hub.", no_args_is_help=True)
for name, command in {
    "up": classroom.up,
    "down": classroom.down,
    "status": classroom.status,
    "quota": classroom.quota,
    "prestart": classroom.prestart_command,
    "backup": classroom.backup_command,
    "restore": classroom.restore_command,
}.items():
    app.command(name)(command)
for name, group in {
    "course": course.course_app,
    "images": course.images_app,
    "nodes": scaleout.nodes_app,
    "export": scaleout.export_app,
    "roster": grading.roster_app,
    "assignment": grading.assignment_app,
    "grades": grading.grades_app,
    "lti": lti.lti_app,
}.items():
    app.add_typer(group, name=name)
