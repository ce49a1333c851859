"""Which data sets a course needs: read from the chapters' code and classroom.yaml."""

import json

import nbformat
import pytest

from d2lhub import config
from d2lhub.course.data import DataError, Needs, scan, scan_code
from d2lhub.course.manifest import MANIFEST_NAME, Chapter, CourseManifest

SHA = "76e5be1548fd8222e5074cf0faae75edff8cf93f"


def test_chapter_defined_entry_and_uses():
    needs = Needs()
    scan_code(
        f"d2l.DATA_HUB['kaggle_house_train'] = (  \n    d2l.DATA_URL + 'kaggle_house_pred_train.csv',\n    '{SHA.upper()}')\n"
        "data = d2l.download('kaggle_house_train')\n"
        "d2l.download_extract(\"hotdog\")\n",
        "ch/a.ipynb",
        needs,
    )
    assert needs.defined == {"kaggle_house_train": ("kaggle_house_pred_train.csv", SHA)}
    assert needs.names == {"kaggle_house_train": ["ch/a.ipynb"], "hotdog": ["ch/a.ipynb"]}


def test_urls_and_gluon_sets():
    needs = Needs()
    scan_code(
        "d2l.download(d2l.DATA_URL + 'x.txt')\n"
        "d2l.download('https://example.org/y.zip')\n"
        "train = gluon.data.vision.FashionMNIST(train=True)\n"
        "t = vision.CIFAR10(train=False)\n"
        "data = d2l.FashionMNIST(batch_size=256)\n",
        "ch/b.ipynb",
        needs,
    )
    assert needs.names == {"FashionMNIST": ["ch/b.ipynb"], "CIFAR10": ["ch/b.ipynb"]}


def test_conflicting_definitions_are_refused():
    needs = Needs()
    scan_code(f"d2l.DATA_HUB['a'] = (d2l.DATA_URL + 'a.zip', '{SHA}')", "one.ipynb", needs)
    with pytest.raises(DataError, match="two.ipynb: DATA_HUB\\['a'\\] is defined differently"):
        scan_code(f"d2l.DATA_HUB['a'] = (d2l.DATA_URL + 'b.zip', '{SHA}')", "two.ipynb", needs)


def test_scan_reads_built_chapters_and_listed_names(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("d2l.download_extract('ptb')")])
    (tmp_path / "ch").mkdir()
    nbformat.write(nb, tmp_path / "ch/x.ipynb")
    CourseManifest("t", [Chapter("ch/x.ipynb", "X", "Part", "0")]).save(tmp_path / MANIFEST_NAME)
    needs = scan(tmp_path, ("airfoil", "ptb"))
    assert needs.names == {"airfoil": ["classroom.yaml"], "ptb": ["classroom.yaml", "ch/x.ipynb"]}


def load_course(tmp_path, course):
    (tmp_path / "images/student").mkdir(parents=True, exist_ok=True)
    (tmp_path / "images/student/Dockerfile").write_text("FROM scratch\n")
    path = tmp_path / "classroom.yaml"
    path.write_text(json.dumps({"course": course}))
    return config.load(path).course


def test_config_data_keys(tmp_path):
    course = load_course(tmp_path, {"data": ["airfoil"], "data_url": "http://127.0.0.1:9000/mirror"})
    assert course.data == ("airfoil",)
    assert course.data_url == "http://127.0.0.1:9000/mirror/"
    assert load_course(tmp_path, {}).data_url == "http://d2l-data.s3-accelerate.amazonaws.com/"


@pytest.mark.parametrize(
    ("course", "message"),
    [
        ({"data_url": "ftp://host/"}, "course.data_url"),
        ({"data": ["a", "a"]}, "course.data: a listed twice"),
        ({"data": ["x/y"]}, "course.data"),
    ],
)
def test_config_data_keys_refused(tmp_path, course, message):
    with pytest.raises(config.ConfigError, match=message):
        load_course(tmp_path, course)
