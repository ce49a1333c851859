"""Course delivery into ~/d2l: new chapters appear, untouched ones refresh, edited ones are kept."""

from pathlib import Path

from d2lhub.image import delivery
from d2lhub.image.delivery import NOTE_NAME, beside_name, course_roots, link_data, sync


def course(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "course"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_first_sync_delivers_everything(tmp_path):
    home = tmp_path / "home"
    report = sync(course(tmp_path, {"index.ipynb": "i", "ch1/a.ipynb": "a1"}), home)
    assert sorted(report.added) == ["ch1/a.ipynb", "index.ipynb"]
    assert (home / "d2l/ch1/a.ipynb").read_text() == "a1"


def test_update_refreshes_untouched_adds_new_keeps_edited(tmp_path):
    home = tmp_path / "home"
    sync(course(tmp_path, {"a.ipynb": "a1", "b.ipynb": "b1"}), home)
    (home / "d2l/b.ipynb").write_text("my notes in b")
    report = sync(course(tmp_path, {"a.ipynb": "a2", "b.ipynb": "b2", "c.ipynb": "c1"}), home)
    assert report.updated == ["a.ipynb"]
    assert report.added == ["c.ipynb"]
    assert report.kept == ["b.ipynb"]
    assert (home / "d2l/a.ipynb").read_text() == "a2"
    assert (home / "d2l/b.ipynb").read_text() == "my notes in b"
    assert (home / "d2l" / beside_name("b.ipynb")).read_text() == "b2"


def test_unchanged_course_reports_nothing(tmp_path):
    home = tmp_path / "home"
    source = course(tmp_path, {"a.ipynb": "a1"})
    sync(source, home)
    (home / "d2l/a.ipynb").write_text("edited")
    report = sync(source, home)
    assert (report.added, report.updated, report.kept) == ([], [], [])
    assert (home / "d2l/a.ipynb").read_text() == "edited"


def test_deleted_chapter_comes_back(tmp_path):
    home = tmp_path / "home"
    source = course(tmp_path, {"a.ipynb": "a1"})
    sync(source, home)
    (home / "d2l/a.ipynb").unlink()
    assert sync(source, home).added == ["a.ipynb"]


def test_beside_name():
    assert beside_name("ch/x.ipynb") == "ch/x.new.ipynb"


def test_first_sync_writes_no_note(tmp_path):
    home = tmp_path / "home"
    sync(course(tmp_path, {"a.ipynb": "a1"}), home)
    assert not (home / "d2l" / NOTE_NAME).exists()


def test_update_note_names_kept_chapters(tmp_path):
    home = tmp_path / "home"
    sync(course(tmp_path, {"a.ipynb": "a1", "b.ipynb": "b1"}), home)
    (home / "d2l/b.ipynb").write_text("mine")
    sync(course(tmp_path, {"a.ipynb": "a2", "b.ipynb": "b2", "c.ipynb": "c1"}), home)
    note = (home / "d2l" / NOTE_NAME).read_text()
    assert "- c.ipynb" in note.split("New chapters:")[1]
    assert "- a.ipynb" in note.split("Refreshed")[1]
    assert "- b.ipynb: new version in b.new.ipynb" in note


def test_link_data_links_files_and_leaves_students_own(tmp_path):
    shared = tmp_path / "shared"
    (shared / "extracted").mkdir(parents=True)
    (shared / "set.zip").write_bytes(b"zip")
    (shared / "table.csv").write_text("1,2")
    (shared / ".set.zip.partial").write_bytes(b"half")
    folder = tmp_path / "home/d2l/data"
    folder.mkdir(parents=True)
    (folder / "table.csv").write_text("my own table")
    assert link_data(shared, folder) == ["set.zip"]
    assert (folder / "set.zip").is_symlink() and (folder / "set.zip").read_bytes() == b"zip"
    assert (folder / "table.csv").read_text() == "my own table"
    assert sorted(p.name for p in folder.iterdir()) == ["set.zip", "table.csv"]
    assert link_data(shared, folder) == []


def test_link_data_without_a_cache_does_nothing(tmp_path):
    assert link_data(tmp_path / "missing", tmp_path / "data") == []
    assert not (tmp_path / "data").exists()


def test_note_lists_chapters_only(tmp_path):
    home = tmp_path / "home"
    sync(course(tmp_path, {"a.ipynb": "a1", "course.json": "1"}), home)
    sync(course(tmp_path, {"a.ipynb": "a1", "course.json": "2", "img/x.svg": "<svg/>"}), home)
    assert not (home / "d2l" / NOTE_NAME).exists()
    sync(course(tmp_path, {"a.ipynb": "a2", "course.json": "3"}), home)
    note = (home / "d2l" / NOTE_NAME).read_text()
    assert "- a.ipynb" in note and "course.json" not in note


def test_several_courses_each_land_in_their_own_folder_with_their_own_data_links(tmp_path, monkeypatch):
    """The hub mounts each of a student's courses at COURSE_MOUNT/<course>: one sync fills ~/d2l/<course>/,
    and each course folder gets the data links its chapters' `../data` reads."""
    mounted = course(tmp_path, {"intro/course.json": "{}", "intro/ch/a.ipynb": "a", "adv/course.json": "{}",
                                "adv/part/b.ipynb": "b"})
    assert course_roots(mounted) == [Path("adv"), Path("intro")]
    assert course_roots(course(tmp_path / "one", {"course.json": "{}", "ch/a.ipynb": "a"})) == [Path(".")]
    home = tmp_path / "home"
    report = sync(mounted, home)
    assert sorted(report.added) == ["adv/course.json", "adv/part/b.ipynb", "intro/ch/a.ipynb", "intro/course.json"]
    assert (home / "d2l/intro/ch/a.ipynb").read_text() == "a" and (home / "d2l/adv/part/b.ipynb").read_text() == "b"
    shared = tmp_path / "cache"
    shared.mkdir()
    (shared / "set.zip").write_text("zip")
    monkeypatch.setattr(delivery, "SHARED_DATA", shared)
    delivery.deliver(mounted, home)  # what the start script runs
    assert (home / "d2l/adv/data/set.zip").read_text() == "zip"
    assert (home / "d2l/intro/data/set.zip").read_text() == "zip"
    assert not (home / "d2l/data").exists()
