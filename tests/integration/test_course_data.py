"""`d2lhub course data`: every kind of data set a chapter fetches (a DATA_HUB entry, a direct
d2l.download(URL, folder, SHA1) through a URL constant, a Gluon-style file under MXNET_HOME) is
listed, planned, fetched once from the data host into the class's read-only volume, or filled from
a folder (a wrong checksum refused by name, nothing half-written left), then read by `course check`
and by two students' servers with their network turned off.

A local HTTP server on 127.0.0.1 stands in for the data host (`course.data_url`, a mirror) and counts
requests.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import re
import threading
import time
import zipfile
from collections import Counter

import pytest
import yaml
from harness import RunningHub, remove_labelled, write_classroom
from test_course_check import d2lhub

from d2lhub import labels
from d2lhub.course.build import build_course
from d2lhub.state import course_dir
from d2lhub.studentimage import built_image

pytestmark = pytest.mark.integration

TABLE = "x,y\n1,2\n3,4\n"
WORDS = "lantern kettle pebble\n"
PEBBLES = "size,count\nsmall,9\nlarge,3\n"


def demo_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("d2lhub-demo/table.csv", TABLE)
    return buffer.getvalue()


FILES = {"d2lhub-demo.zip": demo_zip(), "words.txt": WORDS.encode(), "pebbles.csv": PEBBLES.encode()}
SHA1 = {name: hashlib.sha1(content).hexdigest() for name, content in FILES.items()}

INDEX = "# Data demo\n\n```toc\n:maxdepth: 2\n\nchapter_data/index\n```\n"
PART = "# Data\n\n```toc\n:maxdepth: 2\n\ntable\nwords\n```\n"
# The URLs name a host nobody serves (port 9 of the machine the code runs on): the class's mirror and
# cache are what make them work.
TABLE_CHAPTER = f"""# A Table From the Data Host

```{{.python .input}}
%%tab mxnet
import os
from d2l import mxnet as d2l
d2l.DATA_HUB['d2lhub-demo'] = (d2l.DATA_URL + 'd2lhub-demo.zip', '{SHA1["d2lhub-demo.zip"]}')
folder = d2l.download_extract('d2lhub-demo')
with open(os.path.join(folder, 'table.csv')) as f:
    assert f.read() == {TABLE!r}
```
"""
WORDS_CHAPTER = f"""# Words and Pebbles

```{{.python .input}}
%%tab mxnet
import os
import mxnet as mx
from mxnet import gluon
from d2l import mxnet as d2l
WORDS_URL = 'http://127.0.0.1:9/words.txt'
PEBBLES_URL = 'http://127.0.0.1:9/pebbles.csv'
```

```{{.python .input}}
%%tab mxnet
words = d2l.download(WORDS_URL, '../data', '{SHA1["words.txt"]}')
pebbles = gluon.utils.download(PEBBLES_URL, path=os.path.join(mx.base.data_dir(), 'datasets', 'pebbles', 'pebbles.csv'), sha1_hash='{SHA1["pebbles.csv"]}')
assert open(words).read() == {WORDS!r} and open(pebbles).read() == {PEBBLES!r}
```
"""
READ_ALL = f"""
import os, json
import mxnet as mx
from mxnet import gluon
from d2l import mxnet as d2l
os.chdir(os.path.expanduser('~/d2l/chapter_data'))
d2l.DATA_URL = 'http://127.0.0.1:9/'
d2l.DATA_HUB['d2lhub-demo'] = (d2l.DATA_URL + 'd2lhub-demo.zip', '{SHA1["d2lhub-demo.zip"]}')
folder = d2l.download_extract('d2lhub-demo')
words = d2l.download('http://127.0.0.1:9/words.txt', '../data', '{SHA1["words.txt"]}')
pebbles = gluon.utils.download('http://127.0.0.1:9/pebbles.csv', path=os.path.join(mx.base.data_dir(), 'datasets', 'pebbles', 'pebbles.csv'), sha1_hash='{SHA1["pebbles.csv"]}')
try:
    open('/srv/d2l/data/d2l/mine.txt', 'w')
    shared_writable = True
except OSError:
    shared_writable = False
print(json.dumps({{"table": open(os.path.join(folder, 'table.csv')).read(), "words": open(words).read(),
                  "pebbles": open(pebbles).read(), "link": os.readlink('../data/d2lhub-demo.zip'),
                  "shared_writable": shared_writable, "mxnet_home": os.environ['MXNET_HOME']}}))
"""


ABSENT = """
import os
from d2l import mxnet as d2l
os.chdir(os.path.expanduser('~/d2l/chapter_data'))
d2l.DATA_HUB['d2lhub-absent'] = ('http://127.0.0.1:9/absent.zip', '0123456789abcdef0123456789abcdef01234567')
d2l.download('d2lhub-absent')
"""


class DataHost(http.server.ThreadingHTTPServer):
    def __init__(self):
        self.requests: Counter[str] = Counter()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests[self.path] += 1
                content = FILES.get(self.path.lstrip("/"))
                if content is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

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


def book(folder):
    (folder / "chapter_data").mkdir(parents=True)
    (folder / "index.md").write_text(INDEX)
    (folder / "chapter_data/index.md").write_text(PART)
    (folder / "chapter_data/table.md").write_text(TABLE_CHAPTER)
    (folder / "chapter_data/words.md").write_text(WORDS_CHAPTER)
    return folder


def built(folder, docker_client, **course):
    path = write_classroom(folder, course={"source": str(book(folder / "book")), **course})
    hub = RunningHub(path)
    build_course(hub.classroom.course.source, course_dir(hub.classroom))
    return path, hub


@pytest.fixture(scope="module")
def classroom_path(tmp_path_factory, data_host, docker_client):
    url = f"http://127.0.0.1:{data_host.server_address[1]}/"
    path, hub = built(tmp_path_factory.mktemp("data"), docker_client, data_url=url)
    yield path
    hub.stop()
    instance = hub.classroom.spawner.instance
    remove_labelled(docker_client, lambda value: value == instance)


@pytest.fixture
def offline_classroom(tmp_path, docker_client):
    path, hub = built(tmp_path, docker_client)
    yield path, hub.classroom
    instance = hub.classroom.spawner.instance
    remove_labelled(docker_client, lambda value: value == instance)


def row(*cells: str) -> re.Pattern:
    """A table row with these cells (rich pads them)."""
    return re.compile(r"│\s*" + r"\s*│\s*".join(re.escape(cell) for cell in cells) + r"\s*│")


def volume_files(docker_client, classroom) -> list[str]:
    output = docker_client.containers.run(
        built_image(classroom, docker_client), ["find", "/srv/d2l/data", "-type", "f"], remove=True, network_mode="none",
        volumes={labels.data_volume(classroom.spawner.instance): {"bind": "/srv/d2l/data", "mode": "ro"}},
        labels={labels.INSTANCE: classroom.spawner.instance},
    )
    return sorted(output.decode().split())


def test_list_and_manifest_before_fetching(classroom_path, data_host, tmp_path):
    listed = d2lhub("course", "data", "--list", "-c", str(classroom_path))
    print(listed.stdout, listed.stderr)
    assert listed.returncode == 0, listed.stderr
    for name, kind, target, chapter in [
        ("d2lhub-demo", "hub", "d2l/d2lhub-demo.zip", "table.ipynb"),
        ("words.txt", "url", "d2l/words.txt", "words.ipynb"),
        ("pebbles.csv", "gluon-file", "mxnet/datasets/pebbles/pebbles.csv", "words.ipynb"),
    ]:
        assert row(name, kind, target, "no", "?", f"chapter_data/{chapter}").search(listed.stdout), name
    assert "3 data sets, 3 not cached: run `d2lhub course data`" in listed.stdout
    manifest = tmp_path / "fetch.json"
    written = d2lhub("course", "data", "--manifest", str(manifest), "-c", str(classroom_path))
    assert written.returncode == 0, written.stderr
    plan = json.loads(manifest.read_text())
    host = f"http://127.0.0.1:{data_host.server_address[1]}/"
    files = {entry["name"]: entry["files"] for entry in plan["data_sets"]}
    assert files["words.txt"] == [{"url": host + "words.txt", "sha1": SHA1["words.txt"], "path": "words.txt"}]
    assert files["d2lhub-demo"][0]["sha1"] == SHA1["d2lhub-demo.zip"]
    assert files["pebbles.csv"][0]["url"] == host + "pebbles.csv"
    assert sum(data_host.requests.values()) == 0


def test_fetched_once_then_cached(classroom_path, data_host):
    first = d2lhub("course", "data", "-c", str(classroom_path))
    print(first.stdout, first.stderr)
    assert first.returncode == 0, first.stderr
    assert "d2lhub-demo" in first.stdout and "fetched" in first.stdout and "chapter_data/table.ipynb" in first.stdout
    assert data_host.requests == {"/d2lhub-demo.zip": 1, "/words.txt": 1, "/pebbles.csv": 1}
    again = d2lhub("course", "data", "-c", str(classroom_path))
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("cached") >= 3
    assert data_host.requests == {"/d2lhub-demo.zip": 1, "/words.txt": 1, "/pebbles.csv": 1}
    listed = d2lhub("course", "data", "--list", "-c", str(classroom_path))
    assert "3 data sets, 0 not cached" in listed.stdout


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


def test_from_folder_refuses_a_wrong_checksum_and_leaves_nothing_half_written(offline_classroom, tmp_path, docker_client):
    path, classroom = offline_classroom
    folder = tmp_path / "downloaded"
    folder.mkdir()
    for name, content in FILES.items():
        (folder / name).write_bytes(content)
    (folder / "words.txt").write_text("not the words the book expects\n")
    (folder / "pebbles.csv").unlink()
    refused = d2lhub("course", "data", "--from", str(folder), "-c", str(path))
    print(refused.stdout, refused.stderr)
    assert refused.returncode == 1
    assert f"failed: words.txt: words.txt: SHA-1 is {hashlib.sha1(b'not the words the book expects' + bytes([10])).hexdigest()}, the book expects {SHA1['words.txt']}: refused" in " ".join(refused.stderr.split())
    assert "failed: pebbles.csv: pebbles.csv: not in the folder" in refused.stderr
    assert volume_files(docker_client, classroom) == ["/srv/d2l/data/d2l/d2lhub-demo.zip"]
    (folder / "words.txt").write_bytes(FILES["words.txt"])
    (folder / "pebbles.csv").write_bytes(FILES["pebbles.csv"])
    filled = d2lhub("course", "data", "--from", str(folder), "-c", str(path))
    assert filled.returncode == 0, filled.stderr
    assert volume_files(docker_client, classroom) == [
        "/srv/d2l/data/d2l/d2lhub-demo.zip", "/srv/d2l/data/d2l/words.txt",
        "/srv/d2l/data/mxnet/datasets/pebbles/pebbles.csv",
    ]
    missing = d2lhub("course", "data", "--from", str(tmp_path / "nowhere"), "-c", str(path))
    assert missing.returncode == 2 and "not a folder" in missing.stderr


def test_check_runs_the_chapters_from_the_cache_without_network(classroom_path, data_host):
    result = d2lhub("course", "check", "-c", str(classroom_path))
    print(result.stdout)
    assert result.returncode == 0, result.stderr
    assert row("chapter_data/table.ipynb", "ok").search(result.stdout)
    assert row("chapter_data/words.ipynb", "ok").search(result.stdout)
    assert data_host.requests == {"/d2lhub-demo.zip": 1, "/words.txt": 1, "/pebbles.csv": 1}


def test_two_students_read_every_kind_with_their_network_off(classroom_path, data_host, docker_client):
    hub = RunningHub(classroom_path)
    hub.start()
    instance = hub.classroom.spawner.instance
    for name in ("student1", "student2"):
        browser = hub.browser(name)
        browser.spawn()
        result = browser.execute(READ_ALL)
        assert result.error is None, result.error
        facts = json.loads(result.stdout)
        assert (facts["table"], facts["words"], facts["pebbles"]) == (TABLE, WORDS, PEBBLES)
        assert facts["link"] == "/srv/d2l/data/d2l/d2lhub-demo.zip"
        assert facts["shared_writable"] is False
        assert facts["mxnet_home"] == "/srv/d2l/data/mxnet"
        started = time.monotonic()
        missing = browser.execute(ABSENT)
        assert missing.error == (
            "DataNotCached: data set 'd2lhub-absent' (absent.zip) is not in the class's data cache and this server "
            "cannot download it: ask your admin to run `d2lhub course data`"
        )
        assert time.monotonic() - started < 15  # at once, not after a download's timeout
        # the network off altogether: the same reads in the student's own container, as the student
        container = next(
            c for c in docker_client.containers.list(filters={"label": f"{labels.INSTANCE}={instance}"})
            if c.name.endswith(name)
        )
        for network in list(container.attrs["NetworkSettings"]["Networks"]):
            docker_client.networks.get(network).disconnect(container)
        container.reload()
        assert container.attrs["NetworkSettings"]["Networks"] == {}
        code, output = container.exec_run(["python3", "-c", READ_ALL], user=container.attrs["Config"]["User"])
        assert code == 0, output.decode()
        offline = json.loads(output.decode().strip().splitlines()[-1])
        assert (offline["table"], offline["words"], offline["pebbles"]) == (TABLE, WORDS, PEBBLES)
    assert data_host.requests == {"/d2lhub-demo.zip": 1, "/words.txt": 1, "/pebbles.csv": 1}
