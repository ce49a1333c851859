"""The student image's download guard (d2lhub/image/datacache.py): d2l's and Gluon's download calls read
the class cache by file name, and a file it lacks is one line naming the data set and the admin's command."""

import pytest
import requests

from d2lhub.image import datacache


@pytest.fixture
def guarded(tmp_path, monkeypatch):
    monkeypatch.setattr(datacache, "CACHE", str(tmp_path))
    real = requests.get
    datacache.patch(requests)
    yield tmp_path
    requests.get = real


def call_as(module: str, url: str):
    """requests.get called from code whose module is MODULE (as d2l.download's own frame is)."""
    namespace = {"__name__": module, "requests": requests}
    exec("def fetch(url):\n    return requests.get(url, stream=True)\n", namespace)
    return namespace["fetch"](url)


def test_a_cached_file_is_read_from_the_class_cache_without_network(guarded):
    (guarded / "lantern.txt").write_text("lantern\n")
    for module in ("d2l.mxnet", "mxnet.gluon.utils"):
        response = call_as(module, "http://127.0.0.1:9/some/where/lantern.txt")
        assert response.status_code == 200 and response.content == b"lantern\n"


def test_a_missing_file_is_one_line_naming_the_data_set_and_the_command(guarded):
    with pytest.raises(datacache.DataNotCached) as caught:
        call_as("d2l.mxnet", "http://127.0.0.1:9/kettle.zip")
    assert not isinstance(caught.value, Exception)  # Gluon's retry loop catches Exception only
    assert caught.value._render_traceback_() == [
        "DataNotCached: data set 'kettle.zip' (kettle.zip) is not in the class's data cache and this server "
        "cannot download it: ask your admin to run `d2lhub course data`"
    ]


def test_other_callers_are_left_alone(guarded):
    (guarded / "lantern.txt").write_text("lantern\n")
    with pytest.raises(requests.ConnectionError):
        call_as("student_code", "http://127.0.0.1:9/lantern.txt")
