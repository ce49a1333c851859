"""The tool's calls to the LMS (LTI Advantage services), for `roster sync` and `grades push`.

Each call carries an access token from the platform's token endpoint, got with the OAuth2
client-credentials grant and a JWT client assertion signed with the tool's key (LTI Security
Framework 1.0, section 4.1); the platform checks it against the tool's JWKS (`/hub/lti13/jwks`).
"""

from __future__ import annotations

import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import jwt
import requests

from d2lhub import ltistate
from d2lhub.config import Classroom
from d2lhub.lticonfig import Lti13

SCOPES = {
    "memberships": "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly",
    "lineitem": "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
    "results": "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly",
    "score": "https://purl.imsglobal.org/spec/lti-ags/scope/score",
}
MEDIA = {
    "members": "application/vnd.ims.lti-nrps.v2.membershipcontainer+json",
    "lineitems": "application/vnd.ims.lis.v2.lineitemcontainer+json",
    "lineitem": "application/vnd.ims.lis.v2.lineitem+json",
    "results": "application/vnd.ims.lis.v2.resultcontainer+json",
    "score": "application/vnd.ims.lis.v1.score+json",
}


class LtiError(Exception):
    """The LMS could not be asked (settings missing, platform refused); says which and why."""


def settings(classroom: Classroom) -> Lti13:
    if classroom.auth.kind != "lti13" or classroom.auth.lti13 is None:
        raise LtiError("auth.kind: this needs lti13 (an LMS to talk to)")
    return classroom.auth.lti13


def service_url(classroom: Classroom, key: str) -> str:
    """auth.lti13.<key>, else the URL the latest launch carried; LtiError naming the key when neither."""
    url = getattr(settings(classroom), key) or ltistate.services(classroom.hub.state_dir).get(key)
    if not url:
        raise LtiError(f"auth.lti13.{key}: not set, and no launch from the LMS has carried it yet")
    return url


def with_path(url: str, suffix: str) -> str:
    """A line item's sub-resource: `/scores` or `/results` after its path, before its query."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + suffix))


class Platform:
    """The LMS as the tool calls it: one access token for the scopes asked for, then JSON requests."""

    def __init__(self, classroom: Classroom, *scopes: str):
        self.lti = settings(classroom)
        self.state_dir = classroom.hub.state_dir
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {self.access_token([SCOPES[s] for s in scopes])}"

    def client_assertion(self) -> str:
        kid, key = ltistate.signing_key(self.state_dir)
        now = int(time.time())
        claims = {"iss": self.lti.client_id, "sub": self.lti.client_id, "aud": self.lti.token_url,
                  "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex}
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})

    def access_token(self, scopes: list[str]) -> str:
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": self.client_assertion(),
            "scope": " ".join(scopes),
        }
        try:
            response = requests.post(self.lti.token_url, data=form, timeout=30)
        except requests.RequestException as exc:
            raise LtiError(f"auth.lti13.token_url: {self.lti.token_url} does not answer ({exc.__class__.__name__})") from None
        if response.status_code != 200 or "access_token" not in response.text:
            raise LtiError(f"the LMS refused the tool's token request: {response.status_code} {response.text[:200]}")
        return response.json()["access_token"]

    def call(self, method: str, url: str, media: str, ok=(200, 201, 204), **kwargs) -> requests.Response:
        headers = {"Accept": MEDIA[media]} if method == "GET" else {"Content-Type": MEDIA[media]}
        try:
            response = self.session.request(method, url, headers=headers, timeout=30, **kwargs)
        except requests.RequestException as exc:
            raise LtiError(f"{method} {url}: no answer ({exc.__class__.__name__})") from None
        if response.status_code not in ok:
            raise LtiError(f"the LMS refused {method} {url}: {response.status_code} {response.text[:200]}")
        return response

    def pages(self, url: str, media: str):
        """Each page of a paged container (NRPS and AGS follow `Link: <...>; rel="next"`)."""
        while url:
            response = self.call("GET", url, media)
            yield response.json()
            url = response.links.get("next", {}).get("url")

    def members(self, url: str) -> list[dict]:
        return [member for page in self.pages(url, "members") for member in page.get("members", [])]

    def line_item(self, url: str, resource_id: str, label: str, maximum: float) -> dict:
        """The course's line item for this resource id, created when missing."""
        for page in self.pages(url, "lineitems"):
            found = [item for item in page if item.get("resourceId") == resource_id]
            if found:
                return found[0]
        created = {"label": label, "resourceId": resource_id, "scoreMaximum": maximum, "tag": "d2lhub"}
        return self.call("POST", url, "lineitem", json=created).json()

    def results(self, line_item: dict) -> dict[str, tuple[float | None, float | None]]:
        """LMS user id -> (score, maximum) the platform holds for this line item."""
        return {r["userId"]: (r.get("resultScore"), r.get("resultMaximum"))
                for page in self.pages(with_path(line_item["id"], "/results"), "results") for r in page}

    def post_score(self, line_item: dict, user_id: str, score: float, maximum: float, progress: str) -> None:
        """A score (AGS); progress FullyGraded, or PendingManual while the formgrader's part is still open."""
        body = {"userId": user_id, "scoreGiven": score, "scoreMaximum": maximum, "activityProgress": "Completed",
                "gradingProgress": progress, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())}
        self.call("POST", with_path(line_item["id"], "/scores"), "score", json=body)
