"""A small LTI 1.3 platform (an LMS's side), written from the 1EdTech specs for the tests, on 127.0.0.1.

It does what Canvas or Moodle do towards a tool: OIDC login initiation (the test posts it, as the
LMS's page would), the authorization endpoint answering with an auto-posting form that carries the
signed id_token, its JWKS, a token endpoint for the client-credentials grant with a JWT assertion
(checked against the tool's JWKS), Names and Role Provisioning Services, and Assignment and Grade
Services (line items, scores, results). Its key is made at start; nothing is kept on disk.
"""

from __future__ import annotations

import html
import json
import re
import secrets
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

LTI = "https://purl.imsglobal.org/spec/lti/claim/"
ROLE = "http://purl.imsglobal.org/vocab/lis/v2/membership#"
SCORE_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"


def new_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Platform:
    def __init__(self, client_id="d2lhub-tool", deployment_id="dep-1", context_id="course-101", host="127.0.0.1"):
        self.client_id, self.deployment_id, self.context_id = client_id, deployment_id, context_id
        self.key, self.kid = new_key(), "platform-1"
        self.users: dict[str, dict] = {}  # sub -> {email, given_name, family_name, roles, status}
        self.lineitems: dict[str, dict] = {}
        self.scores: dict[str, dict[str, dict]] = {}  # line item id -> userId -> score
        self.refuse_scores_once: set[str] = set()  # userIds whose next score is refused (a failure part-way)
        self.tokens: dict[str, set[str]] = {}
        self.next_launch: dict = {}  # claims or signing to tamper with, for the next launch only
        self.tool_launch_url = self.tool_jwks_url = self.tool_login_url = ""
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.url = f"http://{host}:{self.server.server_port}"  # `localhost` makes it another site than the hub's 127.0.0.1
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()

    def settings(self) -> dict:
        """auth.lti13 of the classroom that uses this platform."""
        return {"issuer": self.url, "client_id": self.client_id, "deployment_id": self.deployment_id,
                "jwks_url": f"{self.url}/jwks", "auth_login_url": f"{self.url}/auth", "token_url": f"{self.url}/token",
                "contexts": [self.context_id]}

    def add_user(self, sub: str, email: str, role: str) -> None:
        first, last = email.split("@")[0].capitalize(), "Tester"
        self.users[sub] = {"email": email, "given_name": first, "family_name": last, "roles": [ROLE + role],
                           "status": "Active"}

    def jwks(self) -> dict:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}]}

    def id_token(self, sub: str, nonce: str, custom: dict) -> str:
        user, now = self.users[sub], int(time.time())
        claims = {
            "iss": self.url, "aud": self.client_id, "sub": sub, "iat": now, "exp": now + 300, "nonce": nonce,
            "email": user["email"], "given_name": user["given_name"], "family_name": user["family_name"],
            LTI + "version": "1.3.0", LTI + "message_type": "LtiResourceLinkRequest",
            LTI + "deployment_id": self.deployment_id, LTI + "target_link_uri": custom.pop("target", ""),
            LTI + "resource_link": {"id": "link-1"}, LTI + "roles": user["roles"],
            LTI + "context": {"id": self.context_id, "label": "D2L", "title": "Deep learning"},
            LTI + "custom": custom,
            "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice": {
                "context_memberships_url": f"{self.url}/memberships", "service_versions": ["2.0"]},
            "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint": {
                "lineitems": f"{self.url}/lineitems", "scope": [SCORE_SCOPE]},
        }
        tamper = dict(self.next_launch)
        self.next_launch = {}
        key = new_key() if tamper.pop("forge", False) else self.key  # a key the JWKS does not hold, same kid
        claims.update(tamper)
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": self.kid})

    def check_assertion(self, form: dict) -> set[str]:
        """The tool's client-credentials grant: its JWT, verified with the tool's own JWKS."""
        assertion = form["client_assertion"]
        key = jwt.PyJWKClient(self.tool_jwks_url).get_signing_key_from_jwt(assertion).key
        claims = jwt.decode(assertion, key, algorithms=["RS256"], audience=f"{self.url}/token")
        assert claims["iss"] == claims["sub"] == self.client_id, claims
        assert form["grant_type"] == "client_credentials", form
        return set(form["scope"].split())

    def handler(self):
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status: int, body, content_type="application/json", headers=None):
                data = (json.dumps(body) if content_type.endswith("json") else body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def scoped(self, scope_word: str) -> bool:
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                if not any(scope_word in s for s in platform.tokens.get(token, ())):
                    self.reply(401, {"error": "no token with that scope"})
                    return False
                return True

            def do_GET(self):
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/jwks":
                    return self.reply(200, platform.jwks())
                if url.path == "/auth":
                    return self.authorize(query)
                if url.path == "/course/launch":  # the LMS's course page: its link starts the login at the tool
                    return self.reply(200, auto_post(platform.tool_login_url, {
                        "iss": platform.url, "login_hint": query["sub"], "target_link_uri": query.get("target") or platform.tool_login_url.replace("lti13/oauth_login", ""),
                        "client_id": platform.client_id, "lti_deployment_id": platform.deployment_id,
                        "lti_message_hint": json.dumps({"path": query["path"]} if "path" in query else {})}), "text/html")
                if url.path == "/memberships" and self.scoped("contextmembership"):
                    members = [{"user_id": sub, **{k: u[k] for k in ("email", "given_name", "family_name", "roles", "status")}}
                               for sub, u in platform.users.items()]
                    half = len(members) // 2  # two pages, linked as the spec says
                    if query.get("page") == "2":
                        return self.reply(200, {"id": url.path, "members": members[half:]})
                    link = f'<{platform.url}/memberships?page=2>; rel="next"'
                    return self.reply(200, {"id": url.path, "context": {"id": platform.context_id},
                                            "members": members[:half]}, headers={"Link": link})
                if url.path == "/lineitems" and self.scoped("lineitem"):
                    items = [i for i in platform.lineitems.values()
                             if "resource_id" not in query or i["resourceId"] == query["resource_id"]]
                    return self.reply(200, items)
                match = re.fullmatch(r"/lineitems/(\w+)/results", url.path)
                if match and self.scoped("result.readonly"):
                    item = platform.lineitems[match.group(1)]
                    held = platform.scores.get(item["id"], {})
                    return self.reply(200, [{"userId": u, "resultScore": s["scoreGiven"], "resultMaximum": s["scoreMaximum"]}
                                            for u, s in held.items()])
                if not self.wfile.closed and url.path not in ("/memberships", "/lineitems") and not match:
                    self.reply(404, {"error": "not found"})

            def authorize(self, query: dict):
                """The OIDC authentication request: checked, answered with the id_token in an auto-posting form."""
                if query.get("client_id") != platform.client_id or query.get("redirect_uri") != platform.tool_launch_url:
                    return self.reply(400, {"error": "unknown client or redirect_uri", "query": query})
                if query.get("response_type") != "id_token" or query.get("scope") != "openid" or not query.get("nonce"):
                    return self.reply(400, {"error": "not an OIDC implicit id_token request"})
                custom = json.loads(query.get("lti_message_hint") or "{}")
                token = platform.id_token(query["login_hint"], query["nonce"], custom)
                self.reply(200, auto_post(query["redirect_uri"], {"id_token": token, "state": query["state"]}), "text/html")

            def do_POST(self):
                url = urlsplit(self.path)
                if url.path == "/token":
                    form = {k: v[0] for k, v in parse_qs(self.body().decode()).items()}
                    try:
                        scopes = platform.check_assertion(form)
                    except Exception as exc:  # noqa: BLE001 -- any bad assertion is the client's error
                        return self.reply(400, {"error": "invalid_client", "why": str(exc)})
                    token = secrets.token_hex(16)
                    platform.tokens[token] = scopes
                    return self.reply(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600,
                                            "scope": " ".join(sorted(scopes))})
                if url.path == "/lineitems" and self.scoped("lineitem"):
                    item = json.loads(self.body())
                    ident = uuid.uuid4().hex[:10]
                    item["id"] = f"{platform.url}/lineitems/{ident}"
                    platform.lineitems[ident] = item
                    return self.reply(201, item)
                match = re.fullmatch(r"/lineitems/(\w+)/scores", url.path)
                if match and self.scoped("scope/score"):
                    score = json.loads(self.body())
                    if score["userId"] in platform.refuse_scores_once:
                        platform.refuse_scores_once.discard(score["userId"])
                        return self.reply(503, {"error": "try again later"})
                    platform.scores.setdefault(platform.lineitems[match.group(1)]["id"], {})[score["userId"]] = score
                    return self.reply(200, {})
                if not match and url.path != "/lineitems":
                    self.reply(404, {"error": "not found"})

        return Handler


def auto_post(action: str, fields: dict[str, str]) -> str:
    """A page whose form posts itself, as an LMS sends a browser on."""
    inputs = "".join(f'<input type="hidden" name="{name}" value="{html.escape(value)}">' for name, value in fields.items())
    return f'<form method="post" action="{html.escape(action)}">{inputs}</form><script>document.forms[0].submit()</script>'


def launch(platform: Platform, hub_url: str, sub: str, session: requests.Session | None = None, **custom):
    """What the LMS's page and the student's browser do: login initiation, the platform's form, its post.

    Returns (the tool's answer to the launch, the posted form, the cookies the browser held then)."""
    session = session or requests.Session()
    start = session.post(f"{hub_url}/hub/lti13/oauth_login", allow_redirects=False, timeout=30, data={
        "iss": platform.url, "login_hint": sub, "target_link_uri": custom.get("target") or f"{hub_url}/hub/",
        "client_id": platform.client_id, "lti_deployment_id": platform.deployment_id,
        "lti_message_hint": json.dumps(custom)})
    assert start.status_code == 302, (start.status_code, start.text[:300])
    page = requests.get(start.headers["Location"], timeout=30)
    assert page.status_code == 200, page.text
    action = html.unescape(re.search(r'action="([^"]+)"', page.text).group(1))
    form = {name: html.unescape(value) for name, value in re.findall(r'name="(\w+)" value="([^"]*)"', page.text)}
    cookies = session.cookies.copy()
    answer = session.post(action, data=form, allow_redirects=False, timeout=30)
    return answer, (action, form), cookies


def replay(action: str, form: dict, cookies) -> requests.Response:
    """Someone who captured a launch (its form and the browser's cookies) posts it again."""
    session = requests.Session()
    session.cookies.update(cookies)
    return session.post(action, data=form, allow_redirects=False, timeout=30)


__all__ = ["Platform", "launch", "replay"]
