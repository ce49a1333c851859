"""Where the book comes from: a folder, a git URL or a release archive, resolved to a local
folder holding the book's root `index.md` (the first step of `d2lhub course build --from`)."""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import subprocess
import tarfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from d2lhub.course.manifest import CourseError

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz")


def _is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def _looks_like_git_url(source: str) -> bool:
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme in {"git", "ssh", "file", "git+ssh"}:
        return True
    if parsed.scheme in {"http", "https"}:
        return True  # a non-archive web URL can only be a repository
    return bool(re.match(r"^[\w.-]+@[\w.-]+:", source))  # scp-like git@host:org/repo


def _is_bare_repo(path: Path) -> bool:
    return path.is_dir() and (path / "HEAD").is_file() and (path / "objects").is_dir()


def _find_book_root(folder: Path, source: str) -> Path:
    """Release archives wrap the book in one top folder (d2l-en-1.0.3/); look one level down."""
    if (folder / "index.md").is_file():
        return folder
    candidates = sorted(p for p in folder.iterdir() if p.is_dir() and (p / "index.md").is_file())
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        names = ", ".join(p.name for p in candidates)
        raise CourseError(f"{source}: several folders hold an index.md ({names}); point at one")
    raise CourseError(f"{source}: no index.md at the top (nor in a single top folder)")


def _git_clone(url: str, dest: Path) -> Path:
    try:
        result = subprocess.run(
            ["git", "clone", "--quiet", "--depth", "1", url, str(dest)],
            capture_output=True,
            text=True,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
    except FileNotFoundError as exc:
        raise CourseError(f"{url}: cannot clone, git is not installed") from exc
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()
        raise CourseError(f"{url}: git clone failed: {detail[-1] if detail else result.returncode}")
    return dest


def _download(url: str, workdir: Path) -> Path:
    name = posixpath.basename(urllib.parse.urlparse(url).path) or "source"
    dest = workdir / name
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as fh:
            shutil.copyfileobj(response, fh)
    except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
        raise CourseError(f"{url}: download failed ({exc})") from exc
    return dest


def _extract(archive: Path, dest: Path, source: str) -> Path:
    """Refuse members that escape `dest`: an archive is untrusted input."""
    dest.mkdir(parents=True, exist_ok=True)
    name = archive.name.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                root = dest.resolve()
                for member in zf.namelist():
                    target = (dest / member).resolve()
                    if target != root and root not in target.parents:
                        raise CourseError(f"{source}: archive member {member!r} escapes the archive")
                zf.extractall(dest)
        else:
            with tarfile.open(archive, "r:gz") as tf:
                tf.extractall(dest, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise CourseError(f"{source}: not a readable archive ({exc})") from exc
    return dest


def resolve_source(source: str, workdir: Path) -> Path:
    """Turn SOURCE (folder, git URL, archive path or URL) into the folder holding index.md.

    Anything fetched or unpacked goes under `workdir`, which the caller owns and cleans.
    """
    source = str(source).strip()
    if not source:
        raise CourseError("no SOURCE given")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    parsed = urllib.parse.urlparse(source)
    is_url = len(parsed.scheme) > 1 and parsed.scheme != "file" or source.startswith("file://")

    if is_url:
        if parsed.scheme == "file" and _is_archive(parsed.path):
            local = Path(urllib.request.url2pathname(parsed.path))
            return _resolve_local(local, workdir, source)
        if parsed.scheme in {"http", "https"} and _is_archive(parsed.path):
            archive = _download(source, workdir)
            return _find_book_root(_extract(archive, workdir / "unpacked", source), source)
        if _looks_like_git_url(source):
            return _find_book_root(_git_clone(source, workdir / "clone"), source)
        raise CourseError(f"{source}: unsupported URL scheme {parsed.scheme!r}")
    if _looks_like_git_url(source) and not Path(source).exists():
        return _find_book_root(_git_clone(source, workdir / "clone"), source)
    return _resolve_local(Path(source).expanduser(), workdir, source)


def _resolve_local(path: Path, workdir: Path, source: str) -> Path:
    if not path.exists():
        raise CourseError(f"{source}: no such file or folder")
    if path.is_file():
        if not _is_archive(path.name):
            raise CourseError(f"{source}: not a folder or a .zip/.tar.gz/.tgz archive")
        return _find_book_root(_extract(path, workdir / "unpacked", source), source)
    if _is_bare_repo(path) and not (path / "index.md").exists():
        return _find_book_root(_git_clone(str(path.resolve()), workdir / "clone"), source)
    return _find_book_root(path.resolve(), source)
