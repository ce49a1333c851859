"""A course update reaches a real student server on its next start: a new chapter appears, an untouched
chapter is refreshed, an edited chapter is kept with the new version beside it, and ~/d2l/UPDATES.md says so."""

from __future__ import annotations

import json
import shutil

import pytest
from harness import REPO, RunningHub, remove_labelled, write_classroom

from d2lhub.course.build import build_course
from d2lhub.state import course_dir

pytestmark = pytest.mark.integration

UPDATE_LINE = "\n\nThis paragraph arrived with a course update.\n"
NEW_CHAPTER = "# Broadcasting Again\n\n```{.python .input}\n%%tab mxnet\nfrom mxnet import np\nprint(np.ones((2, 1)) + np.ones((1, 3)))\n```\n"


@pytest.fixture(scope="module")
def classroom(tmp_path_factory, docker_client):
    folder = tmp_path_factory.mktemp("delivery")
    book = folder / "book"
    shutil.copytree(REPO / "course", book)
    hub = RunningHub(write_classroom(folder, course={"source": str(book)}))
    build_course(str(book), course_dir(hub.classroom))
    hub.start()
    yield hub, book
    hub.stop()
    instance = hub.classroom.spawner.instance
    remove_labelled(docker_client, lambda value: value == instance)


def with_student_note(notebook_text: str) -> str:
    nb = json.loads(notebook_text)
    nb["cells"].append({"cell_type": "markdown", "id": "student-note", "metadata": {}, "source": "My own notes."})
    return json.dumps(nb)


def test_update_adds_refreshes_and_keeps_edits(classroom):
    hub, book = classroom
    student = hub.browser("student1")
    student.spawn()
    student.open_server()
    chapters = "d2l/chapter_preliminaries"
    assert "broadcasting.ipynb" not in student.list_dir(chapters)
    assert "UPDATES.md" not in student.list_dir("d2l")
    student.write_file(f"{chapters}/ndarray.ipynb", with_student_note(student.read_file(f"{chapters}/ndarray.ipynb")))
    student.stop()

    for name in ("ndarray.md", "autograd.md"):
        with open(book / "chapter_preliminaries" / name, "a") as chapter:
            chapter.write(UPDATE_LINE)
    (book / "chapter_preliminaries/broadcasting.md").write_text(NEW_CHAPTER)
    index = book / "chapter_preliminaries/index.md"
    index.write_text(index.read_text().replace("autograd\n", "autograd\nbroadcasting\n"))
    build_course(str(book), course_dir(hub.classroom))

    student.spawn()
    student.open_server()
    listing = student.list_dir(chapters)
    assert "broadcasting.ipynb" in listing
    assert "arrived with a course update" in student.read_file(f"{chapters}/autograd.ipynb")
    kept = student.read_file(f"{chapters}/ndarray.ipynb")
    assert "My own notes." in kept and "arrived with a course update" not in kept
    beside = student.read_file(f"{chapters}/ndarray.new.ipynb")
    assert "arrived with a course update" in beside and "My own notes." not in beside
    note = student.read_file("d2l/UPDATES.md")
    print(note)
    assert "- chapter_preliminaries/broadcasting.ipynb" in note.split("New chapters:")[1]
    assert "- chapter_preliminaries/autograd.ipynb" in note.split("Refreshed")[1]
    assert "- chapter_preliminaries/ndarray.ipynb: new version in chapter_preliminaries/ndarray.new.ipynb" in note
    assert "course.json" not in note
