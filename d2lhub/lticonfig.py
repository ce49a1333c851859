"""`auth.lti13` in classroom.yaml: the LMS (an LTI 1.3 platform) students launch from, and how its
people become hub users. config.py imports it; it also holds the pure rules the hub, `roster sync`
and `grades push` share: an LMS user's hub name and role.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["student", "instructor", "ta", "admin"]
URL = r"^https?://[^\s/?#]+[^\s#]*$"
ROLE_RANK = ("student", "ta", "instructor", "admin")  # the highest of a person's roles wins
DEFAULT_ROLES = {"Learner": "student", "TeachingAssistant": "ta", "Instructor": "instructor"}

# Claims of an LTI 1.3 launch (an id_token) the classroom reads.
CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
CONTEXT_CLAIM = CLAIM + "context"
ROLES_CLAIM = CLAIM + "roles"
DEPLOYMENT_CLAIM = CLAIM + "deployment_id"
CUSTOM_CLAIM = CLAIM + "custom"
TARGET_LINK_CLAIM = CLAIM + "target_link_uri"
NRPS_CLAIM = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
AGS_CLAIM = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"


class Lti13(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    issuer: str = Field(pattern=URL, description="the platform's issuer (`iss`), e.g. `https://canvas.instructure.com`")
    client_id: str = Field(min_length=1, description="the tool's client id the platform gave it (Canvas: the developer key's id)")
    deployment_id: str = Field(min_length=1, description="the deployment id of the tool in the platform; launches of other deployments are refused")
    jwks_url: str = Field(pattern=URL, description="the platform's public keys (JWKS): launches are checked against them")
    auth_login_url: str = Field(pattern=URL, description="the platform's OIDC authorization endpoint (where a launch's login is sent back)")
    token_url: str = Field(pattern=URL, description="the platform's OAuth2 token endpoint, for `roster sync` and `grades push`")
    contexts: tuple[str, ...] = Field(
        min_length=1, description="the LTI context ids (the LMS courses) whose members may sign in; launches from any other "
        "context are refused")
    username_from: Literal["email", "sub"] = Field(
        "email", description="what names a hub user: email (its part before @) or sub (the LMS's opaque user id); "
        "lower-cased, other characters than letters, digits, - and _ become -")
    roles: dict[str, Role] = Field(
        DEFAULT_ROLES, description="LTI role (the last word of its URI: Learner, TeachingAssistant, Instructor, "
        "Administrator, ...) -> student, ta, instructor or admin; the highest wins; someone with none of them is refused")
    courses: dict[str, str] = Field(
        {}, description="context id -> the `course` or `course/section` its launches put people in (needed on a hub "
        "with several courses or sections; with one, every context's launches are of it)")
    memberships_url: str | None = Field(
        None, pattern=URL, description="the course's Names and Role Provisioning Services URL for `roster sync`; "
        "unset: the one the latest launch carried")
    lineitems_url: str | None = Field(
        None, pattern=URL, description="the course's Assignment and Grade Services line items URL for `grades push`; "
        "unset: the one the latest launch carried")

    @field_validator("contexts")
    @classmethod
    def contexts_named(cls, contexts: tuple[str, ...]) -> tuple[str, ...]:
        if any(not c.strip() for c in contexts):
            raise ValueError("a context id is empty")
        return contexts


def settings_for_kind(auth):
    """auth, when the settings its kind needs are there; ValueError naming the missing key otherwise."""
    if auth.kind == "lti13" and auth.lti13 is None:
        raise ValueError("auth.lti13: required when auth.kind is lti13")
    return auth


def role_word(uri: str) -> str:
    """`http://purl.imsglobal.org/vocab/lis/v2/membership/Instructor#TeachingAssistant` -> `TeachingAssistant`."""
    return re.split(r"[#/]", uri.strip())[-1]


def role_of(lti_roles: list[str] | tuple[str, ...], mapping: dict[str, str]) -> str | None:
    """The classroom role of someone with these LTI roles (the highest mapped one), or None."""
    mapped = {mapping[word] for word in map(role_word, lti_roles) if word in mapping}
    return max(mapped, key=ROLE_RANK.index) if mapped else None


def hub_name(value: str | None, source: str = "email") -> str:
    """The hub user name of an LMS user, from their email or their opaque id (sub); ValueError when empty."""
    text = (value or "").strip().lower()
    if source == "email":
        text = text.split("@", 1)[0]
    text = re.sub(r"[^a-z0-9_-]", "-", text).strip("-")
    if not text:
        raise ValueError(f"no user name can be made from {source} {value!r}")
    if not text[0].isalpha():
        text = "u" + text
    return text[:32]
