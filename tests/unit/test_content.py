"""The book importer, against a tiny original book in tests/fixtures/book."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import nbformat
import pytest
from d2lbook import notebook as d2l_notebook

from d2lhub.course import convert
from d2lhub.course.build import build_course
from d2lhub.course.manifest import CourseError, CourseManifest
from d2lhub.course.source import resolve_source

BOOK = Path(__file__).resolve().parents[1] / "fixtures" / "book"


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def cells(path: Path) -> list[nbformat.NotebookNode]:
    return nbformat.read(path, as_version=4).cells


def code(path: Path) -> str:
    return "\n".join(c.source for c in cells(path) if c.cell_type == "code")


def prose(path: Path) -> str:
    return "\n".join(c.source for c in cells(path) if c.cell_type == "markdown")


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> tuple[Path, CourseManifest, list]:
    out = tmp_path_factory.mktemp("built") / "course"
    calls = []
    manifest = build_course(str(BOOK), out, progress=lambda d, t, n: calls.append((d, t, n)))
    return out, manifest, calls


# ----------------------------------------------------------------- framework selection


def test_keeps_mxnet_only_blocks_and_strips_tab_lines(course):
    out, _, _ = course
    src = code(out / "part_basics/arrays.ipynb")
    assert "pebbles = np.arange(9)" in src
    assert "grid = pebbles.reshape(3, 3)" in src
    assert "%%tab" not in src and "#@tab" not in src
    assert "torch" not in src


def test_multi_tab_and_all_kept_pytorch_and_untagged_dropped(course):
    out, _, _ = course
    src = code(out / "part_basics/tabs_mix.ipynb")
    assert src.split("\n") == ["rows = 3", "cols = 4", "count = rows * cols", "mx_only = count + 1"]
    assert "pytorch rows" not in src
    assert "no tab line" not in src  # untagged code belongs to the default framework
    assert "interact_select" not in src


def test_code_cells_are_clean(course):
    out, _, _ = course
    for path in out.rglob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata == {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        }
        for cell in nb.cells:
            assert cell.metadata == {}
            if cell.cell_type == "code":
                assert cell.execution_count is None and cell.outputs == []


def test_chapter_with_only_all_tab_code_is_kept(course):
    out, manifest, _ = course
    assert code(out / "part_models/shared.ipynb") == "total = sum([1, 2, 3])"
    assert "part_models/shared.ipynb" in [c.path for c in manifest.chapters]


def test_d2lbook_drops_all_only_chapters_and_we_work_around_it():
    text = (BOOK / "part_models/shared.md").read_text()
    nb = d2l_notebook.split_markdown_cell(d2l_notebook.read_markdown(text))
    assert d2l_notebook.get_tab_notebook(nb, tab="mxnet", default_tab="pytorch") is None
    assert convert.select_framework(nb) is not None


def test_pytorch_only_chapter_skipped(course):
    out, manifest, _ = course
    assert not (out / "part_models/torch_only.ipynb").exists()
    assert [(s.path, s.title, s.reason) for s in manifest.skipped] == [
        ("part_models/torch_only.ipynb", "Torch Pebbles", "no mxnet code")
    ]


def test_prose_only_chapter_kept(course):
    out, _, _ = course
    nb_cells = cells(out / "part_basics/prose_only.ipynb")
    assert nb_cells and all(c.cell_type == "markdown" for c in nb_cells)


def test_tab_prose_blocks(course):
    out, _, _ = course
    text = prose(out / "part_basics/arrays.ipynb")
    assert "MXNet keeps the pebbles in an `ndarray`." in text
    assert "PyTorch keeps" not in text
    assert ":begin_tab:" not in text and ":end_tab:" not in text


def test_convert_chapter_returns_none_without_mxnet_code():
    assert convert.convert_chapter("# T\n\n```{.python .input}\nx = 1\n```\n") is None
    assert convert.convert_chapter("# T\n\nwords only\n") is not None


# ----------------------------------------------------------------- labels and references


def test_labels_become_anchors(course):
    out, _, _ = course
    text = prose(out / "part_basics/arrays.ipynb")
    assert '<a id="sec_arrays"></a>' in text
    assert '<a id="fig_grid"></a>' in text
    assert ":label:" not in text and ":width:" not in text
    assert '<a id="eq_count"></a>' in prose(out / "part_basics/tabs_mix.ipynb")


def test_numref_links_across_chapters_and_parts(course):
    out, _, _ = course
    mix = prose(out / "part_basics/tabs_mix.ipynb")
    assert "[Pebble Layers](../part_models/layers.ipynb#sec_layers)" in mix  # forward, other part
    layers = prose(out / "part_models/layers.ipynb")
    assert "[Pebble Arrays](../part_basics/arrays.ipynb#sec_arrays)" in layers
    assert "[A picture](#fig_stack)" in layers  # explicit text, same notebook
    assert "[Depth](#sec_layer_depth)" in layers
    assert "A torch-only variant is Torch Pebbles." in layers  # target skipped: text only
    words = prose(out / "part_basics/prose_only.ipynb")
    assert "[Pebble Arrays](arrays.ipynb#sec_arrays)" in words  # :ref:
    assert "[A three by three grid of pebbles](arrays.ipynb#fig_grid)" in words  # figure caption


def test_eqref_and_citations(course):
    out, _, _ = course
    assert "The count obeys (eq_count)." in prose(out / "part_basics/tabs_mix.ipynb")
    assert "older than any computer [Pebbler1901]." in prose(out / "part_basics/arrays.ipynb")
    assert "[Pebbler1901, Stone1923]" in prose(out / "part_basics/prose_only.ipynb")


def test_roles_inside_fenced_code_untouched(course):
    out, _, _ = course
    assert 'as they are :numref:`sec_arrays`"' in prose(out / "part_basics/prose_only.ipynb")


def test_no_sphinx_roles_left(course):
    out, _, _ = course
    for path in out.rglob("*.ipynb"):
        text = prose(path).replace(":numref:`sec_arrays`", "")
        for role in (":numref:", ":ref:", ":eqref:", ":cite:", ":label:", ":eqlabel:", "```toc"):
            assert role not in text, (path, role)


def test_unknown_label_stays_readable():
    out = convert.rewrite_references("see :numref:`sec_nowhere`", "a/b.ipynb", {}, lambda body: "")
    assert out == "see `sec_nowhere`"


def test_toc_blocks_become_link_lists(course):
    out, _, _ = course
    basics = prose(out / "part_basics/index.ipynb")
    assert "- [Pebble Arrays](arrays.ipynb)\n- [Mixing Tabs](tabs_mix.ipynb)\n- [Just Words](prose_only.ipynb)" in basics
    models = prose(out / "part_models/index.ipynb")
    assert "- [Pebble Layers](layers.ipynb)\n- [Shared Pebbles](shared.ipynb)" in models
    assert "torch_only" not in models


# ----------------------------------------------------------------- images


def test_only_referenced_images_copied(course):
    out, manifest, _ = course
    assert manifest.images == ["img/grid.svg", "img/stack.svg"]
    assert sorted(p.name for p in (out / "img").iterdir()) == ["grid.svg", "stack.svg"]
    assert (out / "img/grid.svg").read_bytes() == (BOOK / "img/grid.svg").read_bytes()
    # the reference still resolves from the notebook's folder
    assert "](../img/grid.svg)" in prose(out / "part_basics/arrays.ipynb")
    assert (out / "part_basics" / "../img/grid.svg").resolve().is_file()


def test_collect_images_rejects_escaping_paths():
    nb = convert.new_notebook([nbformat.v4.new_markdown_cell("![x](../../etc/passwd)")])
    with pytest.raises(CourseError, match="outside the book"):
        convert.collect_images(nb, "part/a.md", BOOK)


# ----------------------------------------------------------------- order, index, manifest


def test_order_follows_toc(course):
    _, manifest, calls = course
    assert [c.path for c in manifest.chapters] == [
        "part_basics/index.ipynb",
        "part_basics/arrays.ipynb",
        "part_basics/tabs_mix.ipynb",
        "part_basics/prose_only.ipynb",
        "part_models/index.ipynb",
        "part_models/layers.ipynb",
        "part_models/shared.ipynb",
    ]
    assert [c.part for c in manifest.chapters] == ["Basics"] * 4 + ["Models"] * 3
    assert [n for _, _, n in calls][:3] == ["part_basics/index.md", "part_basics/arrays.md", "part_basics/tabs_mix.md"]
    assert calls[-1] == (8, 8, "part_models/shared.md")
    assert [d for d, _, _ in calls] == list(range(1, 9))


def test_read_toc_reports_missing_entries(tmp_path):
    book = tmp_path / "book"
    shutil.copytree(BOOK, book)
    index = book / "part_models/index.md"
    index.write_text(index.read_text().replace("shared\n", "shared\nghost\n"))
    entries = convert.read_toc(book)
    assert [e.source for e in entries if not e.exists] == ["part_models/ghost.md"]
    manifest = build_course(str(book), tmp_path / "out")
    assert ("part_models/ghost.ipynb", "listed in a toc but missing") in [(s.path, s.reason) for s in manifest.skipped]


def test_index_notebook(course):
    out, _, _ = course
    nb = nbformat.read(out / "index.ipynb", as_version=4)
    text = nb.cells[0].source
    assert text.startswith("# Tiny Tensor Tour\n")
    assert text.index("## Basics") < text.index("[Pebble Arrays](part_basics/arrays.ipynb)")
    assert text.index("[Just Words](part_basics/prose_only.ipynb)") < text.index("## Models")
    assert text.index("## Models") < text.index("[Shared Pebbles](part_models/shared.ipynb)")
    assert "torch_only" not in text
    assert nb.metadata.kernelspec.name == "python3"


def test_manifest_contents_and_roundtrip(course):
    import hashlib

    out, manifest, _ = course
    data = json.loads((out / "course.json").read_text())
    assert set(data) == {"title", "chapters", "skipped", "images", "files", "warnings"}
    assert data["title"] == "Tiny Tensor Tour"
    first = data["chapters"][1]
    assert first == {
        "path": "part_basics/arrays.ipynb",
        "title": "Pebble Arrays",
        "part": "Basics",
        "sha256": hashlib.sha256((out / "part_basics/arrays.ipynb").read_bytes()).hexdigest(),
        "gpus": 0,
    }
    assert CourseManifest.load(out / "course.json") == manifest


def test_manifest_load_error(tmp_path):
    (tmp_path / "course.json").write_text("{")
    with pytest.raises(CourseError, match="course manifest"):
        CourseManifest.load(tmp_path / "course.json")


# ----------------------------------------------------------------- determinism and atomicity


def test_deterministic(tmp_path, course):
    built, _, _ = course
    build_course(str(BOOK), tmp_path / "again")
    assert tree(tmp_path / "again") == tree(built)


def test_failed_build_leaves_previous_course(tmp_path):
    out = tmp_path / "course"
    build_course(str(BOOK), out)
    before = tree(out)
    broken = tmp_path / "broken"
    shutil.copytree(BOOK, broken)
    (broken / "img/stack.svg").unlink()  # referenced by the second part only
    calls = []
    with pytest.raises(CourseError, match="stack.svg"):
        build_course(str(broken), out, progress=lambda d, t, n: calls.append(n))
    assert calls  # it failed midway, after some chapters were done
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "course"]  # no staging left


def test_rebuild_replaces_course(tmp_path):
    out = tmp_path / "course"
    out.mkdir()
    (out / "stale.ipynb").write_text("{}")
    build_course(str(BOOK), out)
    assert not (out / "stale.ipynb").exists()
    assert (out / "course.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["course"]


# ----------------------------------------------------------------- sources


def git(*args: str, cwd: Path) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def git_repo(tmp_path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(BOOK, repo)
    git("init", "-q", cwd=repo)
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "book", cwd=repo)
    return repo


def test_git_file_url_source(tmp_path, git_repo, course):
    root = resolve_source(git_repo.as_uri(), tmp_path / "work")
    assert (root / "index.md").is_file() and (root / ".git").is_dir()
    assert tmp_path / "work" in root.parents
    build_course(git_repo.as_uri(), tmp_path / "out")
    assert tree(tmp_path / "out") == tree(course[0])


def test_bare_repo_path_source(tmp_path, git_repo):
    bare = tmp_path / "book.git"
    git("clone", "-q", "--bare", str(git_repo), str(bare), cwd=tmp_path)
    root = resolve_source(str(bare), tmp_path / "work")
    assert (root / "part_models/layers.md").is_file()


def test_tar_gz_archive_with_top_folder(tmp_path, course):
    archive = tmp_path / "tiny-book-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(BOOK, arcname="tiny-book-1.0")
    root = resolve_source(str(archive), tmp_path / "work")
    assert root.name == "tiny-book-1.0" and (root / "index.md").is_file()
    build_course(str(archive), tmp_path / "out")
    assert tree(tmp_path / "out") == tree(course[0])


def test_zip_archive_and_file_url(tmp_path):
    archive = tmp_path / "book.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(BOOK.rglob("*")):
            zf.write(path, "book-main/" + path.relative_to(BOOK).as_posix())
    root = resolve_source(archive.as_uri(), tmp_path / "work")
    assert (root / "index.md").is_file() and root.name == "book-main"


def test_local_folder_source():
    assert resolve_source(str(BOOK), Path("/nonexistent-unused")) == BOOK


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp: str(tmp / "nope"), "no such file or folder"),
        (lambda tmp: str(tmp), "no index.md"),
        (lambda tmp: str(_write(tmp / "notes.txt", b"hello")), "not a folder or a"),
        (lambda tmp: str(_write(tmp / "bad.tar.gz", b"not gzip")), "not a readable archive"),
        (lambda tmp: str(_write(tmp / "bad.zip", b"not zip")), "not a readable archive"),
        (lambda tmp: (tmp / "missing.git").as_uri(), "git clone failed"),
        (lambda tmp: "", "no SOURCE"),
    ],
)
def test_bad_sources(tmp_path, make, message):
    source = make(tmp_path)
    with pytest.raises(CourseError, match=message):
        resolve_source(source, tmp_path / "work")
    with pytest.raises(CourseError):
        build_course(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_archive_without_book(tmp_path):
    archive = tmp_path / "empty.tgz"
    (tmp_path / "stuff").mkdir()
    _write(tmp_path / "stuff/readme.md", b"# not a book")
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tmp_path / "stuff", arcname="stuff")
    with pytest.raises(CourseError, match="no index.md"):
        resolve_source(str(archive), tmp_path / "work")


def test_out_is_a_file(tmp_path):
    target = _write(tmp_path / "course", b"x")
    with pytest.raises(CourseError, match="not a folder"):
        build_course(str(BOOK), target)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_http_archive_is_downloaded(tmp_path):
    import functools
    import http.server
    import threading

    served = tmp_path / "served"
    served.mkdir()
    with tarfile.open(served / "book-v1.tgz", "w:gz") as tf:
        tf.add(BOOK, arcname="book-v1")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/book-v1.tgz"
        root = resolve_source(url, tmp_path / "work")
        assert (root / "index.md").is_file() and (tmp_path / "work/book-v1.tgz").is_file()
        with pytest.raises(CourseError, match="download failed"):
            resolve_source(url.replace("book-v1", "missing"), tmp_path / "work2")
    finally:
        server.shutdown()
        server.server_close()


def test_files_opened_by_code_come_along_and_missing_ones_warn(tmp_path):
    from d2lhub.course.convert import code_files, gpus_needed

    (tmp_path / "img").mkdir()
    (tmp_path / "img/cat.svg").write_text("<svg/>")
    (tmp_path / "data").mkdir()
    (tmp_path / "data/notes.txt").write_text("notes")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("'../img/never.png' in prose is not code"),
        nbformat.v4.new_code_cell("img = image.imread('../img/cat.svg')\nt = open(\"../data/notes.txt\").read()\n"
                                  "other = '../img/missing.jpg'\nout = '../../outside.txt'\nurl = 'http://x/y.png'"),
    ])
    found, missing = code_files(nb, "chapter_x/a.md", tmp_path)
    assert found == ["data/notes.txt", "img/cat.svg"]
    assert missing == ["../img/missing.jpg", "../../outside.txt"]
    assert gpus_needed(nb) == 0
    gpu = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("d = [npx.gpu(0), npx.gpu(1)]\ntrain(num_gpus=1)")])
    assert gpus_needed(gpu) == 2
    assert gpus_needed(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = mx.gpu()")])) == 1
    assert gpus_needed(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("d2l.try_gpu(3)")])) == 0
