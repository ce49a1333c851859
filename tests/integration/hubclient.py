"""A student's browser, spoken in HTTP: sign in through the form, spawn, use the server through the proxy."""

from __future__ import annotations

import re
import time

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from d2lhub.ops.kernelrun import KernelResult, channels_url, run_code

# A browser sends an idempotent request again when a kept-alive connection it reused was just
# closed by the server (the proxy closes idle ones after 5 s); requests does not, unless told.
RESEND_IDEMPOTENT = Retry(total=2, connect=2, read=1, status=0, backoff_factor=0.2,
                          allowed_methods=frozenset({"GET", "HEAD", "OPTIONS"}), raise_on_status=False)


class Browser:
    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.mount("http://", HTTPAdapter(max_retries=RESEND_IDEMPOTENT))
        self.session.mount("https://", HTTPAdapter(max_retries=RESEND_IDEMPOTENT))
        self.name = ""

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def xsrf(self, path_prefix: str = "/hub/") -> str:
        for cookie in self.session.cookies:
            if cookie.name == "_xsrf" and (cookie.path or "/").startswith(path_prefix.rstrip("/")):
                return cookie.value
        return ""

    def login(self, name: str, password: str) -> requests.Response:
        form = self.session.get(self.url("/hub/login"), timeout=30)
        form.raise_for_status()
        response = self.session.post(
            self.url("/hub/login"),
            data={"username": name, "password": password, "_xsrf": self.session.cookies.get("_xsrf", path="/hub/")},
            allow_redirects=False,
            timeout=30,
        )
        if response.status_code == 302:
            self.name = name
        return response

    def hub_api(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"X-XSRFToken": self.session.cookies.get("_xsrf", path="/hub/") or ""}
        return self.session.request(method, self.url(f"/hub/api{path}"), headers=headers, timeout=60, **kwargs)

    def spawn(self, timeout: float = 180, poll: float = 0.5) -> float:
        """Ask for the server as the spawn page does and wait until it is ready; returns seconds taken."""
        started = time.monotonic()
        response = self.session.get(self.url("/hub/spawn"), timeout=60)
        response.raise_for_status()
        while time.monotonic() - started < timeout:
            user = self.hub_api("GET", f"/users/{self.name}").json()
            server = (user.get("servers") or {}).get("")
            if server and server.get("ready"):
                return time.monotonic() - started
            if not server and time.monotonic() - started > 10:
                raise AssertionError(f"spawn of {self.name} ended without a server: {user}")
            time.sleep(poll)
        raise AssertionError(f"{self.name}'s server was not ready after {timeout}s")

    def stop(self, timeout: float = 60) -> None:
        self.hub_api("DELETE", f"/users/{self.name}/server")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not (self.hub_api("GET", f"/users/{self.name}").json().get("servers") or {}):
                return
            time.sleep(0.5)
        raise AssertionError(f"{self.name}'s server did not stop")

    def open_server(self, owner: str | None = None) -> requests.Response:
        """Visit the server's page as a browser does (OAuth with the hub on first visit)."""
        return self.session.get(self.url(f"/user/{owner or self.name}/lab"), timeout=60)

    def authorize(self, page: requests.Response) -> requests.Response:
        """Press *Authorize* on the hub's OAuth page, which it shows someone opening another user's server."""
        assert "Authorize access" in page.text, f"not the hub's authorize page: {page.url}"
        fields = re.findall(r'<input type="hidden" name="(_xsrf|scopes)" value="([^"]*)"', page.text)
        return self.session.post(page.url, data=fields, timeout=60)

    def server_api(self, method: str, path: str, owner: str | None = None, **kwargs) -> requests.Response:
        owner = owner or self.name
        headers = {"X-XSRFToken": self.session.cookies.get("_xsrf", path=f"/user/{owner}/") or ""}
        return self.session.request(
            method, self.url(f"/user/{owner}/api{path}"), headers=headers, timeout=60, allow_redirects=False, **kwargs
        )

    def write_file(self, path: str, text: str) -> None:
        response = self.server_api("PUT", f"/contents/{path}", json={"type": "file", "format": "text", "content": text})
        response.raise_for_status()

    def read_file(self, path: str) -> str:
        response = self.server_api("GET", f"/contents/{path}?content=1&type=file&format=text")
        response.raise_for_status()
        return response.json()["content"]

    def list_dir(self, path: str) -> list[str]:
        response = self.server_api("GET", f"/contents/{path}?content=1")
        response.raise_for_status()
        return sorted(item["name"] for item in response.json()["content"])

    def open_notebook(self, path: str) -> str:
        """Open a notebook as JupyterLab does: join the kernel of its session, or start one; returns the kernel id."""
        self.open_server()
        sessions = self.server_api("GET", "/sessions")
        sessions.raise_for_status()
        found = next((s for s in sessions.json() if s["path"] == path), None)
        if found is None:
            created = self.server_api("POST", "/sessions", json={"path": path, "name": path.rsplit("/", 1)[-1],
                                                                  "type": "notebook", "kernel": {"name": "python3"}})
            created.raise_for_status()
            found = created.json()
        return found["kernel"]["id"]

    def execute(self, code: str, timeout: float = 120, shutdown: bool = True, kernel_id: str | None = None) -> KernelResult:
        """Run code over the kernel websocket, the way JupyterLab does: in `kernel_id`, or in a fresh kernel."""
        if kernel_id is None:
            self.open_server()
            kernel = self.server_api("POST", "/kernels", json={"name": "python3"})
            kernel.raise_for_status()
            kernel_id = kernel.json()["id"]
        cookie = "; ".join(f"{c.name}={c.value}" for c in self.session.cookies)
        try:
            return run_code(channels_url(self.base_url, self.name, kernel_id), code, timeout, cookie=cookie)
        finally:
            if shutdown:
                self.server_api("DELETE", f"/kernels/{kernel_id}")
