"""`d2lhub course data`: a data set is fetched once from the data host into the class's read-only volume,
then two students' servers (and `course check`, with no network) use it without downloading again.

A local HTTP server on 127.0.0.1 stands in for d2l's data host (`course.data_url`) and counts requests.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import threading
import zipfile
from collections import Counter

import pytest
import yaml
from harness import RunningHub, remove_labelled, write_classroom
from test_course_check import d2lhub

from d2lhub.course.build import build_course
from d2lhub.state import course_dir

pytestmark = pytest.mark.integration

TABLE = "x,y\n1,2\n3,4\n"


def demo_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("d2lhub-demo/table.csv", TABLE)
    return buffer.getvalue()


ARCHIVE = demo_zip()
SHA1 = hashlib.sha1(ARCHIVE).hexdigest()

INDEX = "# Data demo\n\n```toc\n:maxdepth: 2\n\nchapter_data/index\n```\n"
PART = "# Data\n\n```toc\n:maxdepth: 2\n\ntable\n```\n"
CHAPTER = f"""# A Table From the Data Host

```{{.python .input}}
%%tab mxnet
import os
from d2l import mxnet as d2l
d2l.DATA_HUB['d2lhub-demo'] = (d2l.DATA_URL + 'd2lhub-demo.zip', '{SHA1}')
folder = d2l.download_extract('d2lhub-demo')
with open(os.path.join(folder, 'table.csv')) as f:
    assert f.read() == {TABLE!r}
```
"""

# What a student runs; the URL is this container's own port 9 (nothing listens), so a cache miss fails
# instead of reaching any other host.
STUDENT_CODE = f"""
import os, json
from d2l import mxnet as d2l
os.chdir(os.path.expanduser('~/d2l/chapter_data'))
d2l.DATA_URL = 'http://127.0.0.1:9/'
d2l.DATA_HUB['d2lhub-demo'] = (d2l.DATA_URL + 'd2lhub-demo.zip', '{SHA1}')
folder = d2l.download_extract('d2lhub-demo')
try:
    open('/srv/d2l/data/d2l/mine.txt', 'w')
    shared_writable = True
except OSError:
    shared_writable = False
print(json.dumps({{"table": open(os.path.join(folder, 'table.csv')).read(),
                  "link": os.readlink('../data/d2lhub-demo.zip'),
                  "shared_writable": shared_writable, "mxnet_home": os.environ['MXNET_HOME']}}))
"""


class DataHost(http.server.ThreadingHTTPServer):
    def __init__(self):
        self.requests: Counter[str] = Counter()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests[self.path] += 1
                if self.path != "/d2lhub-demo.zip":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(ARCHIVE)))
                self.end_headers()
                self.wfile.write(ARCHIVE)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture(scope="module")
def data_host():
    server = DataHost()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def classroom_path(tmp_path_factory, data_host, docker_client):
    folder = tmp_path_factory.mktemp("data")
    book = folder / "book"
    (book / "chapter_data").mkdir(parents=True)
    (book / "index.md").write_text(INDEX)
    (book / "chapter_data/index.md").write_text(PART)
    (book / "chapter_data/table.md").write_text(CHAPTER)
    url = f"http://127.0.0.1:{data_host.server_address[1]}/"
    path = write_classroom(folder, course={"source": str(book), "data_url": url})
    hub = RunningHub(path)
    build_course(hub.classroom.course.source, course_dir(hub.classroom))
    yield path
    hub.stop()
    instance = hub.classroom.spawner.instance
    remove_labelled(docker_client, lambda value: value == instance)


def test_fetched_once_then_cached(classroom_path, data_host):
    first = d2lhub("course", "data", "-c", str(classroom_path))
    print(first.stdout, first.stderr)
    assert first.returncode == 0, first.stderr
    assert "d2lhub-demo" in first.stdout and "fetched" in first.stdout and "chapter_data/table.ipynb" in first.stdout
    assert data_host.requests == {"/d2lhub-demo.zip": 1}
    again = d2lhub("course", "data", "-c", str(classroom_path))
    assert again.returncode == 0, again.stderr
    assert "cached" in again.stdout
    assert data_host.requests == {"/d2lhub-demo.zip": 1}


def test_unknown_name_stops_before_fetching(classroom_path, data_host, tmp_path):
    path = tmp_path / "classroom.yaml"
    settings = yaml.safe_load(classroom_path.read_text())
    settings["course"]["data"] = ["no-such-data-set"]
    path.write_text(json.dumps(settings))
    before = sum(data_host.requests.values())
    result = d2lhub("course", "data", "-c", str(path))
    assert result.returncode == 2
    assert "data set 'no-such-data-set' (asked for by classroom.yaml) is neither in d2l's DATA_HUB" in result.stderr
    assert sum(data_host.requests.values()) == before


def test_check_runs_the_chapter_from_the_cache_without_network(classroom_path, data_host):
    result = d2lhub("course", "check", "-c", str(classroom_path))
    print(result.stdout)
    assert result.returncode == 0, result.stderr
    assert "table.ipynb" in result.stdout and "passed" in result.stdout
    assert data_host.requests == {"/d2lhub-demo.zip": 1}


def test_two_students_use_it_without_downloading(classroom_path, data_host):
    hub = RunningHub(classroom_path)
    hub.start()
    for name in ("student1", "student2"):
        browser = hub.browser(name)
        browser.spawn()
        result = browser.execute(STUDENT_CODE)
        assert result.error is None, result.error
        facts = json.loads(result.stdout)
        assert facts["table"] == TABLE
        assert facts["link"] == "/srv/d2l/data/d2l/d2lhub-demo.zip"
        assert facts["shared_writable"] is False
        assert facts["mxnet_home"] == "/srv/d2l/data/mxnet"
    assert data_host.requests == {"/d2lhub-demo.zip": 1}
