"""Start the class's servers before the lecture, so the 9 a.m. minute is sign-in and a kernel.

On a small machine a class signing in at once is bound by CPU: every server's start-up
(Python, JupyterLab, the course sync) competes for the same cores. Started a few minutes
before, in a bounded stream, that work is done when the students arrive; a server nobody
uses is stopped by the idle culler after `culling.timeout` like any other.
Everything goes through the hub's REST API, so the hub's records stay the truth.

With `prestart.schedule` in classroom.yaml the hub runs `on_schedule` as its
`lecture-prestart` service, so nobody has to remember the command before each lecture.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Callable
from urllib.parse import quote
from zoneinfo import ZoneInfo

import requests
import websocket
from croniter import croniter

from d2lhub import hubapi
from d2lhub.config import Classroom
from d2lhub.ops.kernelrun import channels_url, run_code
from d2lhub.state import cli_token, public_url


class PrestartError(Exception):
    """The hub does not answer, or names no such group or user."""


@dataclass
class Outcome:
    user: str
    state: str  # "started", "already running" or "failed"
    seconds: float = 0.0
    reason: str = ""


def api_json(classroom: Classroom, path: str) -> dict | list:
    response = hubapi.api(classroom, path)
    if response.status_code == 404:
        raise PrestartError(f"the hub has no {path.strip('/').replace('/', ' ')}")
    response.raise_for_status()
    return response.json()


def class_members(classroom: Classroom, group: str | None, users: list[str]) -> list[str]:
    """The users named, or the group's members (default: the students of every course and section on the hub)."""
    if users:
        known = {user["name"] for user in api_json(classroom, "/users")}
        unknown = sorted(set(users) - known)
        if unknown:
            raise PrestartError(f"no such user on the hub: {', '.join(unknown)}")
        return users
    groups = [group] if group else [offering.students_group for offering in classroom.offerings]
    members = {name for each in groups for name in api_json(classroom, f"/groups/{each}")["users"]}
    if not members:
        raise PrestartError(f"group {', '.join(groups)} has no members (import the roster with `d2lhub roster import`)")
    return sorted(members)


def server_state(classroom: Classroom, user: str) -> dict | None:
    return (api_json(classroom, f"/users/{user}").get("servers") or {}).get("")


def server_api(classroom: Classroom, user: str, path: str, method: str = "GET", **kwargs) -> requests.Response:
    """The user's Jupyter server's REST API, through the proxy."""
    return hubapi.through_proxy(classroom, f"/user/{user}/api{path}", method, timeout=60, **kwargs)


def warm_notebook(classroom: Classroom, user: str, notebook: str, timeout: float) -> str:
    """Open `notebook`'s session as JupyterLab would and run the warm-up in its kernel; "" or what went wrong.

    JupyterLab joins the kernel of an existing session for the notebook it opens, so the
    student's first cell runs in a kernel that has already paid for its imports.
    """
    try:
        if server_api(classroom, user, f"/contents/{quote(notebook)}?content=0").status_code == 404:
            return f"no notebook {notebook} in {user}'s home"
        sessions = server_api(classroom, user, "/sessions")
        sessions.raise_for_status()
        session = next((found for found in sessions.json() if found["path"] == notebook), None)
        if session is None:
            created = server_api(classroom, user, "/sessions", method="POST", json={
                "path": notebook, "name": PurePosixPath(notebook).name, "type": "notebook", "kernel": {}})
            created.raise_for_status()
            session = created.json()
    except requests.RequestException as exc:
        return f"the server did not open {notebook}: {exc}"
    try:
        result = run_code(channels_url(public_url(classroom), user, session["kernel"]["id"]), classroom.prestart.warm_up, timeout,
                          header=[f"Authorization: token {cli_token(classroom)}"], silent=True)
    except (OSError, websocket.WebSocketException) as exc:
        return f"the kernel of {notebook} did not answer: {exc}"
    return f"warming the kernel of {notebook} failed: {result.error}" if result.error else ""


def start_one(classroom: Classroom, user: str, timeout: float, notebook: str | None = None) -> Outcome:
    started = time.monotonic()
    outcome = start_server(classroom, user, timeout)
    if notebook and outcome.state != "failed":
        problem = warm_notebook(classroom, user, notebook, max(1.0, timeout - (time.monotonic() - started)))
        if problem:
            return Outcome(user, "failed", time.monotonic() - started, problem)
        if outcome.state == "started":
            outcome.seconds = time.monotonic() - started
    return outcome


def start_server(classroom: Classroom, user: str, timeout: float) -> Outcome:
    started = time.monotonic()
    server = server_state(classroom, user)
    if server and server.get("ready"):
        return Outcome(user, "already running")
    if not server:
        response = hubapi.api(classroom, f"/users/{user}/server", method="POST")
        if response.status_code not in (201, 202):
            return Outcome(user, "failed", reason=f"the hub answered {response.status_code}: {response.text[:200]}")
    while time.monotonic() - started < timeout:
        server = server_state(classroom, user)
        if server is None:
            return Outcome(user, "failed", time.monotonic() - started, "the spawn failed (see the hub log)")
        if server.get("ready"):
            return Outcome(user, "started", time.monotonic() - started)
        time.sleep(1)
    return Outcome(user, "failed", time.monotonic() - started, f"not ready after {timeout:.0f} s")


def prestart(
    classroom: Classroom,
    members: list[str],
    parallel: int,
    done: Callable[[Outcome], None] | None = None,
    notebook: str | None = None,
) -> list[Outcome]:
    """Start the members' servers (and the notebook's kernel), `parallel` at a time (0: one per core); one failure never stops the others."""
    timeout = classroom.hub.start_timeout + 30
    parallel = parallel or os.cpu_count() or 1

    def one(user: str) -> Outcome:
        outcome = start_one(classroom, user, timeout, notebook)
        if done:
            done(outcome)
        return outcome

    with ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(one, members))


def next_start(schedule: tuple[str, ...], zone: str, after: datetime) -> datetime:
    """The first moment after `after` that any schedule line names, read in `zone` (so DST shifts with it)."""
    local = after.astimezone(ZoneInfo(zone))
    return min(croniter(line, local).get_next(datetime) for line in schedule)


def on_schedule(classroom: Classroom, say: Callable[[str], None]) -> None:
    """Start the class's servers at every time the schedule names, for as long as the hub runs."""
    settings = classroom.prestart
    while True:
        due = next_start(settings.schedule, settings.timezone or classroom.course.timezone, datetime.now(timezone.utc))
        say(f"next start of the class's servers: {due.isoformat()}")
        while (left := (due - datetime.now(timezone.utc)).total_seconds()) > 0:
            time.sleep(min(left, 60))  # short naps: a changed system clock is noticed within a minute
        try:
            members = class_members(classroom, settings.group, [])
        except (PrestartError, requests.RequestException) as exc:
            say(f"no servers started: {exc}")
            continue
        began = time.monotonic()
        outcomes = prestart(classroom, members, settings.parallel, notebook=settings.notebook)
        states = {state: sum(o.state == state for o in outcomes) for state in ("started", "already running", "failed")}
        say(f"{len(members)} server(s) in {time.monotonic() - began:.0f} s: "
            + ", ".join(f"{count} {state}" for state, count in states.items()))
        for outcome in outcomes:
            if outcome.state == "failed":
                say(f"{outcome.user}: {outcome.reason}")
