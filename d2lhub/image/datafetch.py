"""Fill the class's data cache, inside a throwaway container of the student image.

`d2lhub course data` mounts this file and the data volume (writable, only
here) and passes what to fetch as one JSON argument. It runs in the student
image so d2l's own DATA_HUB (names, files, SHA-1s) and Gluon's own data set
classes are the ones students run. Layout of the volume, mounted read-only at
/srv/d2l/data in every student container:

    d2l/<file>      as d2l.download names it: DATA_URL's last path part
    mxnet/...       MXNET_HOME: Gluon's data sets under datasets/<name>

Every name is checked before anything is fetched; a file whose SHA-1 already
matches is kept; a download lands in a hidden partial file and only becomes
visible once its SHA-1 matches. One JSON line per event goes to stdout.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import urllib.request
from pathlib import Path

D2L_FOLDER = Path("/srv/d2l/data/d2l")
GLUON_SETS = ("MNIST", "FashionMNIST", "CIFAR10", "CIFAR100")
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
            raise ValueError(f"SHA-1 of {url} is {digest.hexdigest()}, expected {sha1}")
        os.chmod(partial, 0o644)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return "fetched", target.stat().st_size


def fetch_gluon(name: str) -> tuple[str, int]:
    """Let Gluon's own class fetch (or SHA-1-check) both splits under MXNET_HOME."""
    from mxnet.gluon.data import vision

    root = Path(os.environ["MXNET_HOME"]) / "datasets"
    before = {p: p.stat().st_size for p in root.rglob("*") if p.is_file()} if root.is_dir() else {}
    for train in (True, False):
        getattr(vision, name)(train=train)
    after = {p: p.stat().st_size for p in root.rglob("*") if p.is_file()}
    status = "fetched" if after.keys() - before.keys() else "cached"
    return status, sum(after.values()) - sum(before.values()) if status == "fetched" else 0


def main(argv: list[str]) -> int:
    request = json.loads(argv[0])
    from d2l import mxnet as d2l

    registry = {name: (url.rsplit("/", 1)[-1], sha1) for name, (url, sha1) in d2l.DATA_HUB.items()}
    registry.update({name: tuple(entry) for name, entry in request["defined"].items()})
    unknown = [name for name in request["names"] if name not in registry and name not in GLUON_SETS]
    if unknown:
        emit(event="unknown", names=unknown)
        return 2
    failed = 0
    for name in request["names"]:
        if name in GLUON_SETS:
            file, url = "MXNET_HOME/datasets", os.environ.get("MXNET_GLUON_REPO", "Gluon's repository")
        else:
            file, sha1 = registry[name]
            url = request["data_url"] + file
        emit(event="start", name=name, file=file)
        try:
            status, size = fetch_gluon(name) if name in GLUON_SETS else fetch_file(url, D2L_FOLDER / file, sha1)
            emit(event="done", name=name, file=file, status=status, bytes=size, error="")
        except Exception as exc:  # one data set failing must not stop the others
            failed += 1
            emit(event="done", name=name, file=file, status="failed", bytes=0, error=f"{url}: {exc}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
