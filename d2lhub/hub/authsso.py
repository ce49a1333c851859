"""Single sign-on: OpenID Connect (oauthenticator's GenericOAuthenticator) and LDAP
(jupyterhub-ldapauthenticator), both mapping the identity's groups onto the classroom.

Each kind finds the identity's groups its own way (a claim; the directory's groups); the
`ClassroomIdentity` mixin turns them into the offerings' hub groups (`nbgrader-<id>` for
students, `formgrade-<id>` for graders), admin, and the allow-list, with
d2lhub.hub.authroles. The hub's groups follow the identity at every sign-in
(`manage_groups`), and a person in none of the classroom's groups is refused with a page
saying so.
"""

from __future__ import annotations

from jupyterhub.auth import Authenticator
from ldapauthenticator import LDAPAuthenticator
from oauthenticator.generic import GenericOAuthenticator
from tornado import web
from tornado.httpclient import HTTPClientError
from traitlets import Dict, List, Unicode

from d2lhub.hub import authjwt
from d2lhub.hub.authroles import (
    claim_values,
    hub_groups,
    may_sign_in,
    refusal,
    roles_from_groups,
)

ALLOWED = "d2lhub_allowed"  # set on the auth model by classroom_model, read by check_allowed
CODE_REFUSED = ("The provider refused this sign-in's code (it expired, was used already, or is not one it "
                "issued), so nobody was signed in. Sign in again from the hub's start page.")


class ClassroomIdentity(Authenticator):
    role_groups = Dict(help="role (student, ta, instructor, admin) -> the identity's groups giving it").tag(config=True)
    allowed_groups_extra = List(Unicode(), help="groups whose members may sign in without a role "
                                "from role_groups (they are students)").tag(config=True)
    account_roles = Dict(help="user name -> role classroom.yaml gives them, on top of their groups").tag(config=True)
    course_memberships = Dict(help="identity group -> the offerings' hub groups its members join "
                              "(d2lhub.hub.authroles.course_memberships)").tag(config=True)
    account_groups = Dict(help="user name -> the offerings' hub groups classroom.yaml enrols them in").tag(config=True)
    newcomer_groups = List(Unicode(), help="hub groups of someone let in by allowed_groups alone: the one "
                           "offering's students', on a hub with one").tag(config=True)
    shared_groups = List(Unicode(), help="identity groups kept as hub groups of the same name "
                         "(those the profiles name)").tag(config=True)

    def classroom_model(self, model: dict, identity_groups: list[str]) -> dict:
        """Set the hub's groups and admin flag of this sign-in from the identity's groups."""
        name = model["name"]
        roles = roles_from_groups(identity_groups, self.role_groups)
        if name in self.account_roles:
            roles.add(self.account_roles[name])
        groups = hub_groups(identity_groups, self.course_memberships)
        groups = sorted({*groups, *self.account_groups.get(name, ())})
        allowed = may_sign_in(identity_groups, roles, self.allowed_groups_extra) or bool(groups)
        if allowed and not roles and not groups:
            groups = list(self.newcomer_groups)  # an allowed group alone: a student, where there is one course
        groups += sorted(set(identity_groups) & set(self.shared_groups))
        self.log.info("%s: groups %s -> roles %s, hub groups %s", name, sorted(identity_groups), sorted(roles), groups)
        return {**model, "groups": groups, "admin": "admin" in roles, ALLOWED: allowed}

    async def check_allowed(self, username, auth_model):
        if auth_model and auth_model.get(ALLOWED):
            return True
        self.log.warning("%s refused: in none of the classroom's groups", username)
        raise web.HTTPError(403, refusal(username))


class ClassroomOAuthenticator(ClassroomIdentity, GenericOAuthenticator):
    groups_claim = Unicode("groups", help="the claim (a dotted path) listing the identity's groups").tag(config=True)
    oidc_issuer = Unicode(help="the issuer an ID token must name").tag(config=True)
    jwks_url = Unicode(help="where the issuer publishes the keys its ID tokens are signed with").tag(config=True)

    async def token_to_user(self, token_info):
        """With userdata_from_id_token, the ID token's claims once its signature, issuer, audience
        and expiry check out against the issuer's keys (oauthenticator alone reads it unchecked)."""
        if not self.userdata_from_id_token:
            return await super().token_to_user(token_info)
        keys = await self.httpfetch(self.jwks_url, "Fetching the issuer's keys...", validate_cert=self.validate_server_cert)
        try:
            claims = authjwt.verify(token_info.get("id_token", ""), keys, self.client_id, self.oidc_issuer)
        except authjwt.TokenRefused as exc:
            self.log.warning("ID token refused: %s", exc)
            raise web.HTTPError(403, f"The provider's ID token was refused ({exc}), so nobody was signed in.") from None
        self.log.info("ID token of %s checked: signature, issuer, audience, expiry", claims.get(self.username_claim))
        return claims

    async def get_token_info(self, handler, params):
        """The code traded for tokens at the provider; a code it refuses is a 403 page, not a 500."""
        try:
            return await super().get_token_info(handler, params)
        except HTTPClientError as exc:
            if exc.code is None or not 400 <= exc.code < 500:
                raise
            body = exc.response.body.decode(errors="replace")[:300] if exc.response else ""
            self.log.warning("token endpoint refused a code (%s): %s", exc.code, body)
            raise web.HTTPError(403, CODE_REFUSED) from None

    async def authenticate(self, handler, data=None, **kwargs):
        model = await super().authenticate(handler, data, **kwargs)
        if model is None:
            return None
        user = (model.get("auth_state") or {}).get(self.user_auth_state_key) or {}
        return self.classroom_model(model, claim_values(user, self.groups_claim))


class ClassroomLDAPAuthenticator(ClassroomIdentity, LDAPAuthenticator):
    async def authenticate(self, handler, data):
        model = await super().authenticate(handler, data)
        if model is None:
            return None
        return self.classroom_model(model, list(model["auth_state"]["ldap_groups"]))
