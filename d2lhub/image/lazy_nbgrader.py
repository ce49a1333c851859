"""Load nbgrader's student server extensions on first use instead of at every server start.

Importing nbgrader costs each student server about a third of its start-up CPU and ~40 MB
that stay resident, for a tab most students open once a week. This extension (installed
in the student image in place of nbgrader's `assignment_list` and `validate_assignment`)
answers nbgrader's URLs with a tiny handler; the first request loads the real extensions,
takes the stand-in out of the routing table and repeats itself (307 keeps the method and
body), so the Assignments tab works exactly as before, a moment later the first time.
"""

from __future__ import annotations

import importlib

from tornado import web
from tornado.routing import Router, RuleRouter

NBGRADER_EXTENSIONS = (
    "nbgrader.server_extensions.assignment_list",
    "nbgrader.server_extensions.validate_assignment",
)
NBGRADER_URLS = (r"/assignments(?:/.*)?", r"/courses", r"/nbgrader_version")


class FirstUseLoader(web.RequestHandler):
    loaded = False

    def prepare(self) -> None:
        if not FirstUseLoader.loaded:
            serverapp = self.settings["serverapp"]
            for name in NBGRADER_EXTENSIONS:
                importlib.import_module(name)._load_jupyter_server_extension(serverapp)
            remove_rules(self.application.default_router, FirstUseLoader)
            remove_rules(self.application.wildcard_router, FirstUseLoader)
            FirstUseLoader.loaded = True
        self.redirect(self.request.uri, status=307)


def remove_rules(router: Router, handler: type) -> None:
    """Drop every rule routing to `handler`, however deep the host routers nest it."""
    if not isinstance(router, RuleRouter):
        return
    router.rules = [rule for rule in router.rules if rule.target is not handler]
    for rule in router.rules:
        remove_rules(rule.target, handler)


def _jupyter_server_extension_points():
    return [{"module": "d2lhub_lazy_nbgrader"}]


def _load_jupyter_server_extension(serverapp) -> None:
    base_url = serverapp.web_app.settings["base_url"].rstrip("/")
    serverapp.web_app.add_handlers(".*$", [(base_url + url, FirstUseLoader) for url in NBGRADER_URLS])
