"""auth.lti13 on its own: the settings' checks (each mistake named by its key), an LMS user's hub
name and role, and the tool's keys in the state folder (0600, rotated keeping the previous one)."""

from __future__ import annotations

import stat
from pathlib import Path

import jwt
import pytest
import yaml

from d2lhub import ltistate
from d2lhub.config import ConfigError, load
from d2lhub.grading.ltiservices import LtiError, service_url, with_path
from d2lhub.lticonfig import hub_name, role_of

REPO = Path(__file__).resolve().parents[2]
PLATFORM = {
    "issuer": "https://canvas.example.edu", "client_id": "10000000000042", "deployment_id": "7:abc",
    "jwks_url": "https://canvas.example.edu/api/lti/security/jwks",
    "auth_login_url": "https://canvas.example.edu/api/lti/authorize_redirect",
    "token_url": "https://canvas.example.edu/login/oauth2/token", "contexts": ["c0ffee"],
}
ROLE = "http://purl.imsglobal.org/vocab/lis/v2/membership#"


def classroom_file(tmp_path: Path, auth: dict) -> Path:
    path = tmp_path / "classroom.yaml"
    path.write_text(yaml.safe_dump({
        "images": {"student": {"name": "d2lhub/student", "context": str(REPO / "images/student")}},
        "hub": {"state_dir": str(tmp_path / "state")}, "auth": auth}))
    return path


def test_lti13_settings_load(tmp_path):
    room = load(classroom_file(tmp_path, {"kind": "lti13", "lti13": PLATFORM}))
    assert room.auth.kind == "lti13" and room.auth.lti13.contexts == ("c0ffee",)
    assert room.auth.lti13.roles == {"Learner": "student", "TeachingAssistant": "ta", "Instructor": "instructor"}
    assert room.auth.lti13.username_from == "email" and room.auth.lti13.memberships_url is None


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        ({"kind": "lti13"}, "classroom.yaml: auth: auth.lti13: required when auth.kind is lti13"),
        ({"kind": "saml"}, "auth.kind: Input should be 'native', 'oidc', 'ldap' or 'lti13'"),
        ({"kind": "lti13", "lti13": {**PLATFORM, "contexts": []}}, "auth.lti13.contexts"),
        ({"kind": "lti13", "lti13": {**PLATFORM, "contexts": [" "]}}, "auth.lti13.contexts: a context id is empty"),
        ({"kind": "lti13", "lti13": {k: v for k, v in PLATFORM.items() if k != "token_url"}},
         "auth.lti13.token_url: required key is missing"),
        ({"kind": "lti13", "lti13": {**PLATFORM, "jwks_url": "canvas/jwks"}}, "auth.lti13.jwks_url"),
        ({"kind": "lti13", "lti13": {**PLATFORM, "roles": {"Learner": "wizard"}}}, "auth.lti13.roles.Learner"),
        ({"kind": "lti13", "lti13": {**PLATFORM, "client_secret": "x"}}, "auth.lti13.client_secret: unknown key"),
    ],
)
def test_lti13_mistakes_are_named(tmp_path, auth, expected):
    with pytest.raises(ConfigError) as error:
        load(classroom_file(tmp_path, auth))
    assert expected in str(error.value)


@pytest.mark.parametrize(
    ("value", "source", "name"),
    [
        ("Ada.Lovelace@Uni.example", "email", "ada-lovelace"),
        ("bo@x.org", "email", "bo"),
        ("535fa085-f858-4dab-8fdf-53fad1ec5fa5", "sub", "u535fa085-f858-4dab-8fdf-53fad1e"),
        ("user_17", "sub", "user_17"),
    ],
)
def test_hub_names_fit_the_name_rule(value, source, name):
    assert hub_name(value, source) == name


@pytest.mark.parametrize("value", [None, "", "@uni.example", "..."])
def test_no_name_from_nothing(value):
    with pytest.raises(ValueError, match="no user name can be made"):
        hub_name(value, "email")


def test_the_highest_mapped_role_wins_and_unmapped_roles_give_none():
    mapping = {"Learner": "student", "TeachingAssistant": "ta", "Instructor": "instructor", "Administrator": "admin"}
    assert role_of([ROLE + "Learner"], mapping) == "student"
    assert role_of([ROLE + "Learner", "http://purl.imsglobal.org/vocab/lis/v2/membership/Instructor#TeachingAssistant"],
                   mapping) == "ta"
    assert role_of([ROLE + "Instructor", "http://purl.imsglobal.org/vocab/lis/v2/institution/person#Administrator"],
                   mapping) == "admin"
    assert role_of([ROLE + "Mentor"], mapping) is None
    assert role_of([], mapping) is None


def test_tool_keys_are_private_rotate_and_stay_published_one_rotation(tmp_path):
    first = ltistate.ensure_key(tmp_path)
    assert ltistate.ensure_key(tmp_path) == first  # made once
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    second = ltistate.new_key(tmp_path)
    third = ltistate.new_key(tmp_path)
    assert ltistate.key_files(tmp_path) == [second, third]  # the oldest is gone
    published = ltistate.jwks(tmp_path)["keys"]
    assert [k["kid"] for k in published] == [second.stem, third.stem]
    assert all("d" not in k and k["kty"] == "RSA" for k in published)  # public halves only
    kid, pem = ltistate.signing_key(tmp_path)
    assert kid == third.stem
    token = jwt.encode({"iss": "tool"}, pem, algorithm="RS256", headers={"kid": kid})
    public = jwt.PyJWK(published[-1]).key
    assert jwt.decode(token, public, algorithms=["RS256"]) == {"iss": "tool"}


def test_service_urls_come_from_the_config_or_the_latest_launch(tmp_path):
    room = load(classroom_file(tmp_path, {"kind": "lti13", "lti13": PLATFORM}))
    with pytest.raises(LtiError, match="auth.lti13.memberships_url: not set"):
        service_url(room, "memberships_url")
    ltistate.write(room.hub.state_dir, "services.json", {"memberships_url": "https://lms/m"})
    assert service_url(room, "memberships_url") == "https://lms/m"
    native = load(classroom_file(tmp_path, {}))
    with pytest.raises(LtiError, match="auth.kind: this needs lti13"):
        service_url(native, "lineitems_url")


def test_line_item_sub_resources_keep_the_query():
    assert with_path("https://lms/api/lineitems/7?type=x", "/scores") == "https://lms/api/lineitems/7/scores?type=x"
    assert with_path("https://lms/api/lineitems/7/", "/results") == "https://lms/api/lineitems/7/results"


def test_roster_members_are_checked_all_before_any_change(tmp_path):
    from d2lhub.grading.ltisync import members

    room = load(classroom_file(tmp_path, {"kind": "lti13", "lti13": PLATFORM}))
    raw = [
        {"user_id": "1", "email": "ada@uni.example", "roles": [ROLE + "Learner"], "given_name": "Ada"},
        {"user_id": "2", "email": "tea@uni.example", "roles": [ROLE + "Instructor"]},
        {"user_id": "3", "email": "gone@uni.example", "roles": [ROLE + "Learner"], "status": "Inactive"},
        {"user_id": "4", "email": "mum@uni.example", "roles": [ROLE + "Mentor"]},
    ]
    found = members(room, raw)
    assert [(m.name, m.user_id, m.role) for m in found] == [("ada", "1", "student"), ("tea", "2", "instructor")]
    assert found[0].first_name == "Ada"
    clash = [*raw, {"user_id": "5", "email": "ada@other.example", "roles": [ROLE + "Learner"]},
             {"user_id": "6", "roles": [ROLE + "Learner"]}]
    with pytest.raises(LtiError) as error:
        members(room, clash)
    assert "nothing changed" in str(error.value)
    assert "members '1' and '5' would both be 'ada'" in str(error.value)
    assert "member '6': no user name can be made from email None" in str(error.value)


def test_the_urls_to_register_in_the_lms_are_the_tools_handlers(tmp_path):
    room = load(classroom_file(tmp_path, {"kind": "lti13", "lti13": PLATFORM}))
    urls = ltistate.tool_urls(room)
    assert urls["OpenID Connect login (initiation) URL"] == "http://127.0.0.1:8000/hub/lti13/oauth_login"
    assert urls["Redirect URI (launch URL)"] == "http://127.0.0.1:8000/hub/lti13/oauth_callback"
    assert urls["Public JWK set URL (keyset URL)"] == "http://127.0.0.1:8000/hub/lti13/jwks"
