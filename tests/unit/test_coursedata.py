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
    house = needs.sets["kaggle_house_train"]
    assert (house.kind, house.url, house.sha1, house.target) == (
        "hub", "http://d2l-data.s3-accelerate.amazonaws.com/kaggle_house_pred_train.csv", SHA, "d2l/kaggle_house_pred_train.csv"
    )
    assert needs.sets["hotdog"].url == ""  # d2l's own DATA_HUB resolves it in the student image
    assert needs.names == {"kaggle_house_train": ["ch/a.ipynb"], "hotdog": ["ch/a.ipynb"]}


def test_every_kind_of_data_set():
    needs = Needs()
    constants: dict[str, str] = {}
    scan_code("BASE = 'http://mirror.example/files/'\nTEXT_URL = BASE + 'words.txt'\n", "ch/b.ipynb", needs, constants)
    scan_code(
        f"d2l.download(TEXT_URL, '../data', '{SHA}')\n"
        f"d2l.download(d2l.DATA_URL + 'x.csv', folder, sha1_hash='{SHA}')\n"
        "d2l.download('https://example.org/no-checksum.zip')\n"
        f"gluon.utils.download(BASE + 'p.rec', path=os.path.join(mx.base.data_dir(), 'datasets', 'p'), sha1_hash='{SHA}')\n"
        "train = gluon.data.vision.FashionMNIST(train=True)\n"
        "t = vision.CIFAR10(train=False)\n"
        "data = d2l.FashionMNIST(batch_size=256)\n"
        "net = gluon.model_zoo.vision.resnet18_v2(pretrained=True)\n"
        "other = get_model('alexnet', pretrained=True, ctx=ctx)\n"
        "scratch = vision.resnet34_v1(classes=10)\n",
        "ch/b.ipynb",
        needs,
        constants,
    )
    kinds = {name: (entry.kind, entry.url, entry.target) for name, entry in needs.sets.items()}
    assert kinds == {
        "words.txt": ("url", "http://mirror.example/files/words.txt", "d2l/words.txt"),
        "x.csv": ("url", "http://d2l-data.s3-accelerate.amazonaws.com/x.csv", "d2l/x.csv"),
        "p.rec": ("gluon-file", "http://mirror.example/files/p.rec", "mxnet/datasets/p/p.rec"),
        "FashionMNIST": ("gluon-set", "", "mxnet/datasets/fashion-mnist"),
        "CIFAR10": ("gluon-set", "", "mxnet/datasets/cifar10"),
        "resnet18_v2": ("model", "", "mxnet/models"),
        "alexnet": ("model", "", "mxnet/models"),
    }
    assert all(entry.sha1 == SHA for entry in needs.sets.values() if entry.url)


def test_conflicting_definitions_are_refused():
    needs = Needs()
    scan_code(f"d2l.DATA_HUB['a'] = (d2l.DATA_URL + 'a.zip', '{SHA}')", "one.ipynb", needs)
    with pytest.raises(DataError, match="two.ipynb: data set 'a' is defined differently elsewhere"):
        scan_code(f"d2l.DATA_HUB['a'] = (d2l.DATA_URL + 'b.zip', '{SHA}')", "two.ipynb", needs)


def test_mirror_only_when_not_d2l_own_host(tmp_path):
    from d2lhub.course.data import mirror_of

    assert mirror_of(config.load(write(tmp_path, {}))) == ""
    assert mirror_of(config.load(write(tmp_path, {"data_url": "http://127.0.0.1:9000/m"}))) == "http://127.0.0.1:9000/m/"


def test_scan_reads_built_chapters_and_listed_names(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("d2l.download_extract('ptb')")])
    (tmp_path / "ch").mkdir()
    nbformat.write(nb, tmp_path / "ch/x.ipynb")
    CourseManifest("t", [Chapter("ch/x.ipynb", "X", "Part", "0")]).save(tmp_path / MANIFEST_NAME)
    needs = scan(tmp_path, ("airfoil", "ptb"))
    assert needs.names == {"airfoil": ["classroom.yaml"], "ptb": ["classroom.yaml", "ch/x.ipynb"]}


def write(tmp_path, course):
    (tmp_path / "images/student").mkdir(parents=True, exist_ok=True)
    (tmp_path / "images/student/Dockerfile").write_text("FROM scratch\n")
    path = tmp_path / "classroom.yaml"
    path.write_text(json.dumps({"course": course}))
    return path


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


LIBRARY = f'''
import os
d2l = sys.modules[__name__]
DATA_URL = 'http://d2l-data.s3-accelerate.amazonaws.com/'

class Lantern(d2l.DataModule):
    """Reads lantern.txt by URL, as d2l's own data modules do."""
    def _download(self):
        return d2l.download(d2l.DATA_URL + 'lantern.txt', self.root,
                            '{SHA}')

d2l.DATA_HUB['kettle'] = (d2l.DATA_URL + 'kettle.zip',
                          '{SHA}')

def read_kettle():
    return d2l.download_extract('kettle')

def load_kettle(batch_size):
    return helper(read_kettle())

class Pictures:
    def __init__(self):
        self.train = gluon.data.vision.FashionMNIST(train=True)

def unrelated():
    return 1
'''


def test_what_the_d2l_package_fetches_is_found_through_the_names_chapters_use(tmp_path):
    from d2lhub.course.data import library_needs

    library = library_needs(LIBRARY)
    assert {name: [entry.name for entry in sets] for name, sets in library.items()} == {
        "Lantern": ["lantern.txt"], "read_kettle": ["kettle"], "load_kettle": ["kettle"], "Pictures": ["FashionMNIST"],
    }
    assert library["load_kettle"][0].url == "http://d2l-data.s3-accelerate.amazonaws.com/kettle.zip"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("data = d2l.Lantern(batch_size=2)\nk = d2l.load_kettle(4)")])
    (tmp_path / "ch").mkdir()
    nbformat.write(nb, tmp_path / "ch/x.ipynb")
    CourseManifest("t", [Chapter("ch/x.ipynb", "X", "Part", "0")]).save(tmp_path / MANIFEST_NAME)
    needs = scan(tmp_path, (), library)
    assert needs.names == {"lantern.txt": ["ch/x.ipynb"], "kettle": ["ch/x.ipynb"]}
    assert needs.sets["lantern.txt"].target == "d2l/lantern.txt" and library["Lantern"][0].chapters == ["d2l"]  # not the chapters'
