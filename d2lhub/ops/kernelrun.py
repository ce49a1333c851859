"""Run code in a Jupyter kernel over its websocket, as JupyterLab does (Jupyter messaging protocol 5.3)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

import websocket


@dataclass
class KernelResult:
    stdout: str
    error: str | None  # "Name: value" of an exception, "kernel dead" or "no answer in N s"; None when it ran


def channels_url(base_url: str, user: str, kernel_id: str) -> str:
    """The websocket of a kernel in a user's server, behind the hub's proxy at `base_url` (http or https)."""
    return f"{base_url.replace('http', 'ws', 1)}/user/{user}/api/kernels/{kernel_id}/channels"


def run_code(
    ws_url: str, code: str, timeout: float, header: list[str] | None = None, cookie: str | None = None,
    silent: bool = False,
) -> KernelResult:
    """Send one execute request and collect its output until the kernel is idle again."""
    ws = websocket.create_connection(ws_url, header=header, cookie=cookie, timeout=timeout)
    msg_id = uuid.uuid4().hex
    stdout: list[str] = []
    error: str | None = None
    replied = idle = False  # output ends at idle (IOPub), the verdict comes in the reply (shell): wait for both
    deadline = time.monotonic() + timeout
    try:
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "", "session": uuid.uuid4().hex,
                       "version": "5.3"},
            "parent_header": {},
            "metadata": {},
            "content": {"code": code, "silent": silent, "store_history": False, "user_expressions": {},
                        "allow_stdin": False},
            "channel": "shell",
            "buffers": [],
        }))
        while not (replied and idle):
            if time.monotonic() > deadline:
                return KernelResult("".join(stdout), f"no answer in {timeout:.0f} s")
            message = json.loads(ws.recv())
            kind, content = message["msg_type"], message["content"]
            if kind == "status" and content["execution_state"] in {"restarting", "dead"}:
                return KernelResult("".join(stdout), f"kernel {content['execution_state']}")  # e.g. the memory limit
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if kind == "stream":
                stdout.append(content["text"])
            elif kind == "execute_reply":
                replied = True
                if content.get("status") == "error":
                    error = f"{content.get('ename')}: {content.get('evalue')}"
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
    finally:
        ws.close()
    return KernelResult("".join(stdout), error)
