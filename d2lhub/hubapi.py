"""Requests to the running hub with the CLI's token: its REST API, or (scope access:servers) a student's server.

The `d2lhub` commands, the roster import and the lecture-prestart service all talk to the
hub this way, through its public address, as any API client would.
"""

from __future__ import annotations

import requests

from d2lhub.config import Classroom
from d2lhub.state import cli_token, public_url


def through_proxy(
    classroom: Classroom, path: str, method: str = "GET", timeout: float = 30, **kwargs
) -> requests.Response:
    """A request to the hub's public address (`/hub/api/...` or `/user/NAME/...`) with the CLI's token."""
    return requests.request(
        method,
        f"{public_url(classroom)}{path}",
        headers={"Authorization": f"token {cli_token(classroom)}"},
        timeout=timeout,
        verify=False if classroom.hub.https else True,
        **kwargs,
    )


def api(classroom: Classroom, path: str, method: str = "GET", **kwargs) -> requests.Response:
    return through_proxy(classroom, f"/hub/api{path}", method, **kwargs)


def answers(classroom: Classroom) -> bool:
    try:
        return api(classroom, "/").status_code == 200
    except requests.RequestException:
        return False
