"""Due dates in a student's Assignments tab: nbgrader 0.9.6's tab shows each assignment's name,
course and buttons, nothing else, so the name it lists carries the due date
(`ex01 · due 2027-03-01 23:59 (Europe/Berlin)`, or the student's own extended one), and fetch,
submit and fetch-feedback take the plain name back before nbgrader's own exchange runs.

d2lhub.grading.layout appends this file to the nbgrader config students' servers read
(/etc/jupyter/nbgrader_config.py, Python run by traitlets), so it needs no rebuild of the image;
it imports only the standard library and nbgrader. What it reads, the host writes at release and
extend (d2lhub/grading/deadlines.py): `<course>/deadlines.json` for everyone, and
`<course>/extensions/<student>.json`, readable by that student only.
"""

import json
import os

from nbgrader.exchange.default.fetch_assignment import ExchangeFetchAssignment
from nbgrader.exchange.default.fetch_feedback import ExchangeFetchFeedback
from nbgrader.exchange.default.list import ExchangeList

DUE_SEPARATOR = " · "


def plain_name(assignment_id):
    return assignment_id.split(DUE_SEPARATOR, 1)[0]


def read_json(path):
    try:
        with open(path) as handle:
            found = json.load(handle)
    except (OSError, ValueError):  # none yet, or not this student's
        return {}
    return found if isinstance(found, dict) else {}


def due_labels(course_folder, student):
    """assignment -> what the tab says after its name."""
    labels = {}
    for name, entry in read_json(os.path.join(course_folder, "deadlines.json")).items():
        if isinstance(entry, dict) and "shown" in entry:
            labels[name] = f"due {entry['shown']}"
    for name, until in read_json(os.path.join(course_folder, "extensions", f"{student}.json")).items():
        labels[name] = f"due {until}, extended for you"
    return labels


class DueDateList(ExchangeList):
    def start(self):
        records = super().start()
        student = os.environ.get("JUPYTERHUB_USER", "")
        for record in records if isinstance(records, list) else []:
            labels = due_labels(os.path.join(self.root, record.get("course_id", "")), student)
            name = record.get("assignment_id", "")
            if name in labels:
                record["assignment_id"] = f"{name}{DUE_SEPARATOR}{labels[name]}"
        return records


class PlainName:
    """Before nbgrader's own fetch or submit: the assignment's name without what the list added."""

    def start(self):
        self.coursedir.assignment_id = plain_name(self.coursedir.assignment_id)
        return super().start()


class DueDateFetch(PlainName, ExchangeFetchAssignment):
    pass


class DueDateFetchFeedback(PlainName, ExchangeFetchFeedback):
    pass
