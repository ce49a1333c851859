"""Fill (or look into) the class's data cache, inside a throwaway container of the student image.

`d2lhub course data` mounts this file and the data volume (writable only when fetching) and
passes what to do as one JSON argument: `{"mode": "fetch"|"list"|"plan", "mirror": URL or "",
"gluon_repo": URL or "", "source_dir": folder or "", "sets": [...]}`. Each set is
`{"name", "kind", "url", "sha1", "target"}`; kind is one of

    hub         a d2l DATA_HUB name (url and sha1 from the chapter, or else d2l's own DATA_HUB)
    url         a direct d2l.download(URL, folder, SHA1)
    gluon-file  a gluon.utils.download(URL, path=<under MXNET_HOME>, sha1_hash=SHA1)
    gluon-set   one of Gluon's vision data sets (GLUON_SETS), fetched by Gluon's own class
    model       a Gluon model zoo name, its pretrained weights fetched by Gluon's own code

It runs in the student image so d2l's DATA_HUB and Gluon's classes are the ones students run.
Layout of the volume, mounted read-only at /srv/d2l/data in every student container:

    d2l/<file>      as d2l.download names it: the URL's last path part
    mxnet/...       MXNET_HOME: Gluon's data sets under datasets/, its weights under models/

A mirror (`mirror`) serves single files by their name and Gluon's under `gluon/...` (Gluon's
own repository layout); `source_dir` is a folder of the same layout, served to this process on
the container's own loopback. A download lands in a hidden partial file and becomes visible only
once its SHA-1 matches; a Gluon fetch that fails leaves nothing new behind. One JSON line per
event goes to stdout.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

DATA_ROOT = Path("/srv/d2l/data")
GLUON_SETS = ("MNIST", "FashionMNIST", "CIFAR10", "CIFAR100")
SINGLE_FILE_KINDS = ("hub", "url", "gluon-file")
CHUNK = 1 << 20


def emit(**event: object) -> None:
    print(json.dumps(event), flush=True)


def sha1_of(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_file(url: str, target: Path, sha1: str) -> tuple[str, int]:
    """(cached|fetched, size); raises ValueError on a SHA-1 mismatch, OSError on a failed download."""
    if target.is_file() and sha1_of(target) == sha1:
        return "cached", target.stat().st_size
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    digest = hashlib.sha1()
    try:
        with urllib.request.urlopen(url, timeout=120) as response, open(partial, "wb") as out:
            for block in iter(lambda: response.read(CHUNK), b""):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != sha1:
            raise ValueError(f"SHA-1 is {digest.hexdigest()}, the book expects {sha1}: refused")
        os.chmod(partial, 0o644)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return "fetched", target.stat().st_size


def files_under(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_size for p in root.rglob("*") if p.is_file()} if root.is_dir() else {}


def gluon_root(entry: dict) -> Path:
    return DATA_ROOT / entry["target"]


def fetch_gluon(entry: dict) -> tuple[str, int]:
    """Gluon's own code fetches (or SHA-1-checks) the set's splits or the model's weights; a failure
    removes what it left."""
    root = gluon_root(entry)
    before = files_under(root)
    existed = root.is_dir()
    try:
        if entry["kind"] == "gluon-set":
            from mxnet.gluon.data import vision

            for train in (True, False):
                getattr(vision, entry["name"])(root=str(root), train=train)
        else:
            from mxnet.gluon.model_zoo import model_store

            model_store.get_model_file(entry["name"], root=str(root))
    except BaseException:
        for path in files_under(root).keys() - before.keys():
            path.unlink(missing_ok=True)
        folders = sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True) + ([] if existed else [root])
        for folder in folders:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    after = files_under(root)
    new = after.keys() - before.keys()
    return ("fetched" if new else "cached"), sum(after[p] for p in new) if new else sum(after.values())


def gluon_files(entry: dict, repo: str) -> list[dict]:
    """What Gluon downloads for a set or a model: URL (in `repo`), SHA-1 (empty where Gluon checks
    the extracted file instead) and the path in a mirror or `--from` folder."""
    if entry["kind"] == "model":
        from mxnet.gluon.model_zoo import model_store

        name = f"{entry['name']}-{model_store.short_hash(entry['name'])}"
        paths = [(f"gluon/models/{name}.zip", "")]
    else:
        from mxnet.gluon.data import vision

        class Plan(getattr(vision, entry["name"])):
            def _get_data(self):  # the attributes only, no download
                pass

        with tempfile.TemporaryDirectory() as scratch:
            plan = Plan(root=scratch)
        if hasattr(plan, "_archive_file"):
            pairs = [plan._archive_file]
        else:
            pairs = [plan._train_data, plan._train_label, plan._test_data, plan._test_label]
        paths = [(f"gluon/dataset/{plan._namespace}/{file}", sha1) for file, sha1 in pairs]
    return [{"url": repo + path, "sha1": sha1, "path": path} for path, sha1 in paths]


def serve_folder(folder: str) -> str:
    """Serve FOLDER on this container's loopback: a `--from` folder reads like a mirror."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=folder)
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/"


def resolve(request: dict) -> list[dict] | None:
    """Fill in DATA_HUB names from d2l's own registry and the mirror's URLs; None when some are unknown."""
    registry: dict[str, tuple[str, str]] = {}
    if any(entry["kind"] == "hub" and not entry["url"] for entry in request["sets"]):
        from d2l import mxnet as d2l

        registry = {name: tuple(value) for name, value in d2l.DATA_HUB.items()}
    unknown = []
    for entry in request["sets"]:
        if entry["kind"] == "hub" and not entry["url"]:
            if entry["name"] not in registry:
                unknown.append(entry["name"])
                continue
            entry["url"], entry["sha1"] = registry[entry["name"]]
            entry["target"] = "d2l/" + entry["url"].rsplit("/", 1)[-1]
        if entry["kind"] in SINGLE_FILE_KINDS and request["mirror"]:
            entry["url"] = request["mirror"] + entry["url"].rsplit("/", 1)[-1]
    if unknown:
        emit(event="unknown", names=unknown)
        return None
    return request["sets"]


def describe(entry: dict) -> dict:
    if entry["kind"] in SINGLE_FILE_KINDS:
        target = DATA_ROOT / entry["target"]
        cached = target.is_file() and sha1_of(target) == entry["sha1"]
        return {"cached": cached, "bytes": target.stat().st_size if cached else None}
    found = files_under(gluon_root(entry))
    if entry["kind"] == "model":
        found = {p: size for p, size in found.items() if p.name.startswith(entry["name"] + "-") and p.suffix == ".params"}
    return {"cached": bool(found), "bytes": sum(found.values()) if found else None}


def main(argv: list[str]) -> int:
    request = json.loads(argv[0])
    import requests  # the student image's download guard (d2lhub_datacache) is for students, not this fetch

    requests.get = getattr(requests.get, "__wrapped__", requests.get)
    if request.get("source_dir"):
        request["mirror"] = serve_folder(request["source_dir"])
    repo = request.get("gluon_repo") or request["mirror"] or ""
    if repo:
        os.environ["MXNET_GLUON_REPO"] = repo.rstrip("/") + "/"
    sets = resolve(request)
    if sets is None:
        return 2
    failed = 0
    for entry in sets:
        if request["mode"] == "plan":
            if entry["kind"] in SINGLE_FILE_KINDS:
                files = [{"url": entry["url"], "sha1": entry["sha1"], "path": entry["url"].rsplit("/", 1)[-1]}]
            else:
                files = gluon_files(entry, os.environ.get("MXNET_GLUON_REPO", "https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/"))
            emit(event="plan", name=entry["name"], kind=entry["kind"], target=entry["target"], files=files)
            continue
        if request["mode"] == "list":
            emit(event="listed", name=entry["name"], target=entry["target"], **describe(entry))
            continue
        emit(event="start", name=entry["name"], file=entry["target"])
        try:
            if entry["kind"] in SINGLE_FILE_KINDS:
                status, size = fetch_file(entry["url"], DATA_ROOT / entry["target"], entry["sha1"])
            else:
                status, size = fetch_gluon(entry)
            emit(event="done", name=entry["name"], file=entry["target"], status=status, bytes=size, error="")
        except BaseException as exc:  # one data set failing must not stop the others
            failed += 1
            single = entry["kind"] in SINGLE_FILE_KINDS
            if request.get("source_dir"):
                missing = isinstance(exc, urllib.error.HTTPError) and exc.code == 404
                shown = entry["url"].rsplit("/", 1)[-1] if single else "its Gluon files (gluon/...)"
                error = f"{shown}: " + ("not in the folder" if missing else str(exc))
            else:
                error = f"{entry['url'] if single else os.environ.get('MXNET_GLUON_REPO', 'Gluon repository')}: {exc}"
            emit(event="done", name=entry["name"], file=entry["target"], status="failed", bytes=0, error=error)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
