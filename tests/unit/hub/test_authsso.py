"""Sign-in kinds: the auth: keys, the role mapping, the traits for oidc and ldap, and the start-up
checks of secrets and the issuer (a real HTTP server on loopback, real files)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from jupyterhub.app import JupyterHub
from test_traits import applied, assert_every_trait_is_read, classroom_from, make_facts
from tornado import web
from traitlets.config import Config

from d2lhub.config import Classroom, ConfigError, load
from d2lhub.hub import authroles, facts
from d2lhub.hub.authsso import ClassroomLDAPAuthenticator, ClassroomOAuthenticator

ROLES = {"student": ["cs101"], "ta": ["cs101-tas"], "instructor": ["cs101-staff"], "admin": ["it"]}
OIDC = {"issuer": "https://sso.example.edu/realms/uni", "client_id": "d2lhub", "roles": ROLES}
LDAP = {"server": "ldap.example.edu", "bind_dn_template": ["uid={username},ou=people,dc=example,dc=edu"],
        "roles": {"student": ["cn=cs101,ou=groups,dc=example,dc=edu"]}}
ENDPOINTS = {"issuer": "https://sso", "authorize_url": "https://sso/auth", "token_url": "https://sso/token",
             "userdata_url": "https://sso/me", "jwks_url": "https://sso/jwks", "client_secret": "s3cret"}


def problem(data: dict) -> str:
    with pytest.raises(Exception) as caught:
        Classroom.model_validate(data)
    return str(caught.value)


# classroom.yaml -------------------------------------------------------------------------------


def test_native_stays_the_default():
    assert Classroom().auth.kind == "native"


@pytest.mark.parametrize("auth, expected", [
    ({"kind": "oidc"}, "`oidc` is required with `kind: oidc`"),
    ({"kind": "ldap"}, "`ldap` is required with `kind: ldap`"),
    ({"kind": "native", "oidc": OIDC}, "`oidc` is set, but `kind` is native"),
    ({"kind": "saml"}, "auth.kind"),
    ({"kind": "native", "lti13": {"issuer": "x"}}, "auth.lti13"),
    ({"kind": "oidc", "oidc": {**OIDC, "roles": {}}}, "nobody could sign in"),
    ({"kind": "oidc", "oidc": {**OIDC, "scopes": ["profile"]}}, "must include `openid`"),
    ({"kind": "oidc", "oidc": {**OIDC, "issuer": "sso.example.edu"}}, "auth.oidc.issuer"),
    ({"kind": "oidc", "oidc": {**OIDC, "client_secret": "plain"}}, "auth.oidc.client_secret"),
    ({"kind": "oidc", "oidc": OIDC, "open_signup": True}, "open_signup"),
    ({"kind": "oidc", "oidc": OIDC, "accounts": [{"name": "a", "role": "admin", "password": "12345678"}]},
     "passwords are for `kind: native` only"),
    ({"kind": "ldap", "ldap": {**LDAP, "search": {"base": "ou=people,dc=x"}}}, "exactly one of"),
    ({"kind": "ldap", "ldap": {**LDAP, "tls": "maybe"}}, "auth.ldap.tls"),
])
def test_bad_auth_settings_name_the_key(auth, expected):
    assert expected in problem({"auth": auth})


def test_load_names_the_file_and_key(tmp_path):
    (tmp_path / "classroom.yaml").write_text("auth: {kind: oidc}\n")
    with pytest.raises(ConfigError, match=r"classroom.yaml: auth: `oidc` is required"):
        load(tmp_path / "classroom.yaml")


def test_every_group_is_the_allow_list_and_the_role_groups():
    oidc = Classroom.model_validate({"auth": {"kind": "oidc", "oidc": {**OIDC, "allowed_groups": ["auditors"]}}}).auth.oidc
    assert oidc.every_group() == ("auditors", "cs101", "cs101-tas", "cs101-staff", "it")
    assert oidc.issuer == "https://sso.example.edu/realms/uni"


# role mapping (pure) --------------------------------------------------------------------------


MEMBERSHIPS = {"cs101": ["nbgrader-d2l"], "cs101-tas": ["formgrade-d2l"], "cs101-staff": ["formgrade-d2l"]}


def test_roles_groups_and_admin():
    assert authroles.roles_from_groups(["cs101", "other"], ROLES) == {"student"}
    assert authroles.roles_from_groups(["cs101-staff", "it"], ROLES) == {"instructor", "admin"}
    one_course = Classroom.model_validate({"auth": {"kind": "oidc", "oidc": OIDC}})
    assert authroles.course_memberships(one_course.all_courses, one_course.auth.oidc) == MEMBERSHIPS
    assert authroles.hub_groups(["cs101", "other"], MEMBERSHIPS) == ["nbgrader-d2l"]
    assert authroles.hub_groups(["cs101-staff", "cs101"], MEMBERSHIPS) == ["formgrade-d2l", "nbgrader-d2l"]
    assert authroles.hub_groups([], MEMBERSHIPS) == []


def test_allow_list_never_lets_anyone_in():
    assert not authroles.may_sign_in(["staff-of-other-course"], set(), ["auditors"])
    assert not authroles.may_sign_in([], set(), [])
    assert authroles.may_sign_in(["auditors"], set(), ["auditors"])
    assert authroles.may_sign_in([], {"student"}, [])


def test_claim_values_by_path():
    claims = {"groups": ["a", "b"], "realm_access": {"roles": ["x"]}, "dept": "cs"}
    assert authroles.claim_values(claims, "groups") == ["a", "b"]
    assert authroles.claim_values(claims, "realm_access.roles") == ["x"]
    assert authroles.claim_values(claims, "dept") == ["cs"]
    assert authroles.claim_values(claims, "missing.deeper") == []


# traits -----------------------------------------------------------------------------------------


def test_oidc_traits(tmp_path):
    room = classroom_from({"course": {"id": "ml"}, "auth": {
        "kind": "oidc", "oidc": {**OIDC, "scopes": ["openid", "groups"], "username_claim": "email"},
        "accounts": [{"name": "root", "role": "admin"}]},
        "profiles": [{"name": "cpu", "display_name": "CPU"}, {"name": "big", "display_name": "Big", "groups": ["gpu-users"]}]},
        tmp_path / "state")
    c = applied(room, make_facts(passwords={}, sign_in=ENDPOINTS))
    app = JupyterHub(config=c)
    assert app.authenticator_class is ClassroomOAuthenticator
    assert_every_trait_is_read(c)
    oauth = c.ClassroomOAuthenticator
    assert (oauth.authorize_url, oauth.token_url, oauth.userdata_url) == ("https://sso/auth", "https://sso/token", "https://sso/me")
    assert (oauth.client_id, oauth.client_secret, oauth.scope) == ("d2lhub", "s3cret", ["openid", "groups"])
    assert oauth.username_claim == "email"
    assert "userdata_from_id_token" not in oauth
    assert ClassroomOAuthenticator(config=c).userdata_url == "https://sso/me"  # oauthenticator takes them all
    assert c.Authenticator.allow_all is False and c.Authenticator.manage_groups is True
    assert c.Authenticator.admin_users == {"root"}
    assert "load_groups" not in c.JupyterHub  # groups come from the identity
    assert c.ClassroomIdentity.course_memberships == {
        "cs101": ["nbgrader-ml"], "cs101-tas": ["formgrade-ml"], "cs101-staff": ["formgrade-ml"]}
    assert c.ClassroomIdentity.account_groups == {}  # an admin without courses is in none
    assert c.ClassroomIdentity.newcomer_groups == ["nbgrader-ml"]
    assert c.ClassroomIdentity.shared_groups == ["gpu-users"]


def test_oidc_claims_from_the_id_token(tmp_path):
    room = classroom_from({"auth": {"kind": "oidc", "oidc": {**OIDC, "claims_from": "id_token"}}}, tmp_path / "s")
    c = applied(room, make_facts(passwords={}, sign_in=ENDPOINTS))
    assert_every_trait_is_read(c)
    authenticator = ClassroomOAuthenticator(config=c)
    assert authenticator.userdata_from_id_token is True and not authenticator.userdata_url
    assert (authenticator.jwks_url, authenticator.oidc_issuer) == ("https://sso/jwks", "https://sso")


def test_ldap_traits_with_a_search(tmp_path):
    ldap = {**LDAP, "bind_dn_template": [], "tls": "on_connect", "ca_file": "ca.pem",
            "search": {"base": "ou=people,dc=example,dc=edu", "bind_dn": "cn=hub,dc=example,dc=edu"}}
    room = classroom_from({"auth": {"kind": "ldap", "ldap": ldap}}, tmp_path / "state")
    c = applied(room, make_facts(passwords={}, sign_in={"bind_password": "pw"}))
    assert JupyterHub(config=c).authenticator_class is ClassroomLDAPAuthenticator
    assert_every_trait_is_read(c)
    settings = c.ClassroomLDAPAuthenticator
    assert settings.lookup_dn is True and settings.lookup_dn_search_password == "pw"
    assert settings.allowed_groups == ["cn=cs101,ou=groups,dc=example,dc=edu"]
    assert settings.tls_strategy == "on_connect"
    authenticator = ClassroomLDAPAuthenticator(config=c)  # the ldap package accepts them all
    assert authenticator.server_port == 636


# the authenticator's decision, on the real classes ---------------------------------------------------


def identity_config() -> Config:
    c = Config()
    c.ClassroomIdentity.role_groups = ROLES
    c.ClassroomIdentity.allowed_groups_extra = ["auditors"]
    c.ClassroomIdentity.account_roles = {"dean": "admin"}
    c.ClassroomIdentity.course_memberships = MEMBERSHIPS
    c.ClassroomIdentity.newcomer_groups = ["nbgrader-d2l"]
    c.ClassroomIdentity.shared_groups = ["gpu-users"]
    c.ClassroomOAuthenticator.client_id = "d2lhub"
    return c


@pytest.mark.parametrize("name, groups, hub_groups, admin", [
    ("ann", ["cs101", "gpu-users", "library"], ["nbgrader-d2l", "gpu-users"], False),
    ("tim", ["cs101-tas"], ["formgrade-d2l"], False),
    ("prof", ["cs101-staff", "it"], ["formgrade-d2l"], True),
    ("visitor", ["auditors"], ["nbgrader-d2l"], False),
    ("dean", [], [], True),
])
def test_members_get_their_groups(name, groups, hub_groups, admin):
    authenticator = ClassroomOAuthenticator(config=identity_config())
    model = authenticator.classroom_model({"name": name, "admin": None, "auth_state": None}, groups)
    assert (model["groups"], model["admin"]) == (hub_groups, admin)
    assert asyncio.run(authenticator.check_allowed(name, model)) is True


def test_outsider_is_refused_with_a_page():
    authenticator = ClassroomOAuthenticator(config=identity_config())
    model = authenticator.classroom_model({"name": "eve", "admin": None, "auth_state": None}, ["other-course"])
    with pytest.raises(web.HTTPError) as refused:
        asyncio.run(authenticator.check_allowed("eve", model))
    assert refused.value.status_code == 403
    assert "eve is not in a group allowed" in refused.value.log_message


# start-up checks (facts) ----------------------------------------------------------------------------


def oidc_room(tmp_path: Path, issuer: str) -> Classroom:
    return classroom_from({"auth": {"kind": "oidc", "oidc": {**OIDC, "issuer": issuer}}}, tmp_path / "state")


def test_secret_from_a_private_file_or_the_environment(tmp_path, monkeypatch):
    room = oidc_room(tmp_path, "https://sso.example.edu")
    secret = room.auth.oidc.client_secret
    monkeypatch.delenv(secret.env, raising=False)
    with pytest.raises(ConfigError, match=r"auth.oidc.client_secret: no secret: set \$D2LHUB_OIDC_CLIENT_SECRET"):
        facts.read_secret(room, secret, "auth.oidc.client_secret")
    path = tmp_path / "state" / "oidc_client_secret"
    path.parent.mkdir(parents=True)
    path.write_text("from-file\n")
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match=r"auth.oidc.client_secret: .* may be read by others \(mode 644\)"):
        facts.read_secret(room, secret, "auth.oidc.client_secret")
    os.chmod(path, 0o600)
    assert facts.read_secret(room, secret, "auth.oidc.client_secret") == "from-file"
    monkeypatch.setenv(secret.env, "from-env")
    assert facts.read_secret(room, secret, "auth.oidc.client_secret") == "from-env"


@pytest.fixture
def discovery():
    """A real HTTP server on loopback serving a discovery document (its issuer is set per test)."""
    document: dict = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(document).encode()
            self.send_response(200 if self.path.endswith("/.well-known/openid-configuration") else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", document
    server.shutdown()


def test_issuer_endpoints_from_discovery(discovery):
    base, document = discovery
    document.update(issuer=base, authorization_endpoint=f"{base}/auth", token_endpoint=f"{base}/token",
                    userinfo_endpoint=f"{base}/me", jwks_uri=f"{base}/jwks")
    assert facts.oidc_endpoints(base) == {"issuer": base, "authorize_url": f"{base}/auth", "token_url": f"{base}/token",
                                          "userdata_url": f"{base}/me", "jwks_url": f"{base}/jwks"}
    del document["jwks_uri"]
    with pytest.raises(ConfigError, match="auth.oidc.issuer: .* names no jwks_uri"):
        facts.oidc_endpoints(base)
    document["issuer"] = "https://elsewhere"
    with pytest.raises(ConfigError, match="auth.oidc.issuer: .* describes issuer 'https://elsewhere'"):
        facts.oidc_endpoints(base)


def test_unreachable_issuer_and_directory_stop_start_up(tmp_path, monkeypatch):
    monkeypatch.setenv("D2LHUB_OIDC_CLIENT_SECRET", "x")
    with pytest.raises(ConfigError, match=r"auth.oidc.issuer: http://127.0.0.1:9/.well-known/openid-configuration does not answer"):
        facts.sign_in_facts(oidc_room(tmp_path, "http://127.0.0.1:9"))
    room = classroom_from({"auth": {"kind": "ldap", "ldap": {**LDAP, "server": "127.0.0.1", "port": 9}}}, tmp_path / "s")
    with pytest.raises(ConfigError, match=r"auth.ldap.server: 127.0.0.1:9 does not answer"):
        facts.sign_in_facts(room)


def test_with_several_courses_the_courses_map_decides_who_joins_which():
    """`auth.oidc.courses` on a hub with two courses, one in sections; `roles` names only admins."""
    c = Config()
    c.ClassroomIdentity.role_groups = {"admin": ["it"]}
    c.ClassroomIdentity.allowed_groups_extra = ["auditors"]
    c.ClassroomIdentity.account_roles = {"bob": "student"}
    c.ClassroomIdentity.course_memberships = {"intro-a": ["nbgrader-intro-a"], "intro-staff": ["formgrade-intro-a",
                                              "formgrade-intro-b"], "adv": ["nbgrader-adv"]}
    c.ClassroomIdentity.account_groups = {"bob": ["nbgrader-intro-b"]}
    c.ClassroomIdentity.newcomer_groups = []
    c.ClassroomOAuthenticator.client_id = "d2lhub"
    authenticator = ClassroomOAuthenticator(config=c)
    for name, groups, hub_groups, admin in (
        ("ann", ["intro-a", "adv"], ["nbgrader-adv", "nbgrader-intro-a"], False),
        ("prof", ["intro-staff", "it"], ["formgrade-intro-a", "formgrade-intro-b"], True),
        ("bob", [], ["nbgrader-intro-b"], False),  # classroom.yaml enrols him
        ("visitor", ["auditors"], [], False),  # let in, in no course
    ):
        model = authenticator.classroom_model({"name": name, "admin": None, "auth_state": None}, groups)
        assert (model["groups"], model["admin"]) == (hub_groups, admin)
        assert asyncio.run(authenticator.check_allowed(name, model)) is True
    model = authenticator.classroom_model({"name": "eve", "admin": None, "auth_state": None}, ["other"])
    with pytest.raises(web.HTTPError):
        asyncio.run(authenticator.check_allowed("eve", model))
