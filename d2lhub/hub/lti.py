"""Sign-in by launch from an LMS (`auth.kind: lti13`): jupyterhub-ltiauthenticator's LTI 1.3 tool,
with what a classroom adds to it.

The library checks the launch's signature (the platform's JWKS), issuer, audience, expiry, age and
the nonce against the browser's cookie. Here: a nonce is accepted once (a replayed launch is refused
even with its cookies), the deployment and the context (the LMS course) must be the classroom's, the
LTI roles must map to a classroom role, a student `roster sync` dropped stays out; the role sets the
hub groups of the offering the context is (`auth.lti13.courses`; on a hub with one, that one); the
launch lands on the notebook its link names (custom parameter `path`, or the target link). The
tool's public keys are served at `/hub/lti13/jwks` for the platform.
"""

from __future__ import annotations

import json
import time
from pathlib import PurePosixPath
from urllib.parse import quote, urlparse

from jupyterhub import orm
from jupyterhub.handlers import BaseHandler
from jupyterhub.utils import url_path_join
from ltiauthenticator.lti13.auth import LTI13Authenticator
from ltiauthenticator.lti13.handlers import LTI13CallbackHandler
from tornado.web import HTTPError
from traitlets import Dict, Unicode

from d2lhub import lticonfig, ltistate
from d2lhub.lticonfig import (
    AGS_CLAIM,
    CONTEXT_CLAIM,
    CUSTOM_CLAIM,
    DEPLOYMENT_CLAIM,
    NRPS_CLAIM,
    ROLES_CLAIM,
)

GRADERS = {"ta", "instructor"}


class LaunchHandler(LTI13CallbackHandler):
    """The launch (the platform's id_token, posted by the browser): checked, signed in, sent on."""

    def decode_and_validate_launch_request(self):
        token = super().decode_and_validate_launch_request()
        self.authenticator.accept_once(token)
        self.launch = token
        return token

    async def redirect_to_next_url(self, user):
        role = self.authenticator.launch_role(self.launch)
        context = (self.launch.get(CONTEXT_CLAIM) or {}).get("id")
        self.authenticator.join_course(self.db, user.orm_user, role, self.authenticator.context_groups[context])
        self.authenticator.remember(user.name, self.launch)
        self.redirect(self.deep_link() or self.get_next_url(user))

    def deep_link(self) -> str | None:
        """`/hub/user-redirect/lab/tree/PATH` for the custom parameter `path`, or the target link's path on this hub."""
        path = str((self.launch.get(CUSTOM_CLAIM) or {}).get("path") or "").strip().lstrip("/")
        if path:
            if ".." in PurePosixPath(path).parts:
                raise HTTPError(400, f"the link's path {path!r} leaves the student's home")
            return url_path_join(self.hub.base_url, "user-redirect/lab/tree", quote(path))
        target = urlparse(str(self.launch.get(lticonfig.TARGET_LINK_CLAIM) or ""))
        if target.path.startswith(url_path_join(self.hub.base_url, "user-redirect/")):
            return target._replace(scheme="", netloc="").geturl()
        return None


class JwksHandler(BaseHandler):
    """The tool's public keys: the platform verifies the tool's signed service requests with them."""

    def check_xsrf_cookie(self):
        return

    def get(self):
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(ltistate.jwks(self.authenticator.state_dir)))


class ClassroomLTI13Authenticator(LTI13Authenticator):
    callback_handler = LaunchHandler
    launched_from_lms = True  # the sign-in page says where to sign in instead of showing a form
    settings = Dict(help="auth.lti13 of classroom.yaml, as a mapping").tag(config=True)
    state_dir = Unicode(help="hub.state_dir: the tool's keys and the LMS users seen").tag(config=True)
    context_groups = Dict(help="LTI context id -> students/graders -> the hub groups of its offering").tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen_nonces: dict[str, float] = {}

    def get_handlers(self, app):
        return [*super().get_handlers(app), (r"/lti13/jwks", JwksHandler)]

    def accept_once(self, token: dict) -> None:
        """Refuse a launch whose nonce was used before (kept for as long as a launch may be accepted)."""
        now = time.time()
        self.seen_nonces = {n: t for n, t in self.seen_nonces.items() if t > now}
        nonce = str(token.get("nonce") or "")
        if nonce in self.seen_nonces:
            raise HTTPError(403, "this launch was used already (replayed nonce); launch again from the course")
        self.seen_nonces[nonce] = now + 3600

    def launch_role(self, token: dict) -> str:
        """The classroom role of a launch from the classroom's deployment and context; HTTPError otherwise."""
        if str(token.get(DEPLOYMENT_CLAIM)) != self.settings["deployment_id"]:
            raise HTTPError(403, f"launches of deployment {token.get(DEPLOYMENT_CLAIM)!r} are not accepted here")
        context = (token.get(CONTEXT_CLAIM) or {}).get("id")
        if context not in self.settings["contexts"]:
            raise HTTPError(403, f"launches from LMS course {context!r} are not accepted here")
        role = lticonfig.role_of(token.get(ROLES_CLAIM) or [], self.settings["roles"])
        if role is None:
            raise HTTPError(403, "none of your LMS roles opens this classroom (auth.lti13.roles)")
        return role

    def get_username(self, token: dict) -> str:
        source = self.settings["username_from"]
        try:
            name = lticonfig.hub_name(token.get(source), source)
        except ValueError as exc:
            raise HTTPError(403, f"{exc}; the platform must send it (auth.lti13.username_from)") from None
        known = ltistate.users(self.state_dir).get(name)
        if known and known != token.get("sub"):
            raise HTTPError(403, f"the user name {name!r} belongs to another LMS user already")
        if name in ltistate.disabled(self.state_dir):
            raise HTTPError(403, f"{name} was dropped from this course; ask the instructor")
        return name

    async def authenticate(self, handler, data=None):
        role = self.launch_role(data or {})
        model = await super().authenticate(handler, data)
        return {**model, "admin": role == "admin"}

    def join_course(self, db, orm_user, role: str, course_groups: dict[str, str]) -> None:
        """Students in the students' group of the launch's offering, TAs and instructors in its
        graders', each only there (another offering's groups are left as they are)."""
        wanted = {"student": course_groups["students"]}.get(role) or (
            course_groups["graders"] if role in GRADERS else None)
        for name in course_groups.values():
            group = orm.Group.find(db, name) or orm.Group(name=name)
            if name == wanted and orm_user not in group.users:
                group.users.append(orm_user)
            elif name != wanted and orm_user in group.users:
                group.users.remove(orm_user)
            db.add(group)
        db.commit()

    def remember(self, name: str, token: dict) -> None:
        """The LMS id of this user and the course's service URLs, for `roster sync` and `grades push`."""
        known = ltistate.users(self.state_dir)
        if known.get(name) != token.get("sub"):
            ltistate.write(self.state_dir, "users.json", {**known, name: token.get("sub")})
        found = {"memberships_url": (token.get(NRPS_CLAIM) or {}).get("context_memberships_url"),
                 "lineitems_url": (token.get(AGS_CLAIM) or {}).get("lineitems")}
        found = {key: url for key, url in found.items() if url}
        if found and {**ltistate.services(self.state_dir), **found} != ltistate.services(self.state_dir):
            ltistate.write(self.state_dir, "services.json", {**ltistate.services(self.state_dir), **found})
