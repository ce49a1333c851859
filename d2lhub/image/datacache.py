"""Students never download what the class has; a data set it lacks is one line, not a stack trace.

Installed in the student image as `d2lhub_datacache` and imported at every Python start by
`d2lhub_datacache.pth` (site-packages). It costs nothing until `requests` is imported: then it
wraps `requests.get` for the two download functions the book's chapters reach, d2l's
`download` and Gluon's `mxnet.gluon.utils.download` (calls from anywhere else pass through):

- the class's data cache (`/srv/d2l/data/d2l`, filled by `d2lhub course data`) has the file
  by the URL's name: it is read from there, with no network, whatever folder the chapter
  downloads into (d2l's `../data` and MXNet's `MXNET_HOME` already point there);
- it lacks the file and the download cannot connect (students' servers may have no network):
  `DataNotCached` says which data set and the admin's command, in one line in the notebook
  (`_render_traceback_`), at once. It is a BaseException, so Gluon's retry loop (which retries
  every Exception five times) does not turn it into five more failures.
"""

from __future__ import annotations

import os
import sys

CACHE = "/srv/d2l/data/d2l"
COMMAND = "d2lhub course data"
CALLERS = ("d2l.mxnet", "d2l.torch", "d2l.tensorflow", "d2l.jax", "mxnet.gluon.utils")
CONNECT_TIMEOUT = 10


class DataNotCached(BaseException):
    def __init__(self, name: str, url: str):
        super().__init__(
            f"data set {name!r} ({url.rsplit('/', 1)[-1]}) is not in the class's data cache and this server "
            f"cannot download it: ask your admin to run `{COMMAND}`"
        )

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a traceback
        return [f"DataNotCached: {self}"]


def data_set_name(url: str) -> str:
    d2l = sys.modules.get("d2l.mxnet")
    for name, entry in getattr(d2l, "DATA_HUB", {}).items():
        if entry[0] == url:
            return name
    return url.rsplit("/", 1)[-1]


def cached_response(requests, url: str):
    path = os.path.join(CACHE, url.split("?")[0].rsplit("/", 1)[-1])
    if not os.path.isfile(path):
        return None
    response = requests.models.Response()
    response.status_code, response.url, response.reason = 200, url, "OK (class data cache)"
    response.headers["Content-Length"] = str(os.path.getsize(path))
    response.raw = open(path, "rb")
    return response


def patch(requests) -> None:
    real_get = requests.get

    def get(url, *args, **kwargs):
        if sys._getframe(1).f_globals.get("__name__") not in CALLERS:
            return real_get(url, *args, **kwargs)
        cached = cached_response(requests, str(url))
        if cached is not None:
            return cached
        kwargs.setdefault("timeout", (CONNECT_TIMEOUT, None))
        try:
            return real_get(url, *args, **kwargs)
        except (requests.ConnectionError, requests.Timeout):
            raise DataNotCached(data_set_name(str(url)), str(url)) from None

    get.__wrapped__ = real_get
    requests.get = get


class _Hook:
    """Patches `requests` right after its first import (and then leaves sys.meta_path)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "requests":
            return None
        import importlib.util  # only now: every Python start loads this module

        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("requests")
        if spec is None or spec.loader is None:
            return spec
        original = spec.loader.exec_module

        def exec_module(module):
            original(module)
            patch(module)

        spec.loader.exec_module = exec_module
        return spec


if "requests" in sys.modules:
    patch(sys.modules["requests"])
else:
    sys.meta_path.insert(0, _Hook())
