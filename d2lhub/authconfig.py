"""The `auth:` section of classroom.yaml: who may sign in, and how.

`native` keeps passwords in the hub's database (the default); `oidc` signs people in at an
OpenID Connect provider (Keycloak, Azure AD / Entra ID, Google, a university's Shibboleth);
`ldap` checks their password against a directory; `lti13` takes a launch from the LMS
(d2lhub.lticonfig). For oidc and ldap, the identity's groups
decide the role (`roles`) and who may sign in at all (`allowed_groups`, by default the groups
`roles` names): never anyone the provider knows.

Secrets (the OIDC client secret, the LDAP search account's password) are never keys of this
file: they come from an environment variable or a file in `hub.state_dir` only its owner may
read (d2lhub.hub.facts reads them when the hub starts).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from d2lhub.lticonfig import Lti13, settings_for_kind

NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
ROLES = ("student", "ta", "instructor", "admin")
Role = Literal["student", "instructor", "ta", "admin"]
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Account(Strict):
    name: str = Field(pattern=NAME_PATTERN, description="the sign-in name: lower case letters, digits, - and _")
    role: Role = Field(
        description="student; instructor or ta (grades in the formgrader); admin (the hub's Admin page)"
    )
    password: str | None = Field(None, min_length=8, description="generated and kept in state_dir when unset "
                                 "(native only)")
    courses: tuple[str, ...] = Field(
        (), description="what they study or grade: `course` or `course/section` ids (a student names one section "
        "of a course that has them; a grader named on a course grades all its sections); may be left out on a "
        "hub with one course and no sections"
    )


class CourseRoles(Strict):
    """Which of the identity's groups make people students, TAs or instructors; a person in several gets each."""

    student: tuple[str, ...] = Field((), description="groups whose members are students (the course's "
                                     "`nbgrader-<id>` group)")
    ta: tuple[str, ...] = Field((), description="groups whose members are TAs (the graders' `formgrade-<id>` group)")
    instructor: tuple[str, ...] = Field((), description="groups whose members are instructors (the graders' "
                                        "`formgrade-<id>` group)")


class RoleGroups(CourseRoles):
    """The hub-wide roles: with one course (no sections) student, ta and instructor are of that course."""

    admin: tuple[str, ...] = Field((), description="groups whose members are the hub's admins")

    def mapping(self) -> dict[str, tuple[str, ...]]:
        return {role: getattr(self, role) for role in ROLES}


class Secret(Strict):
    """Where a secret is read from: the environment variable when it is set, else the file."""

    env: str = Field(pattern=ENV_NAME, description="environment variable holding the secret (wins when set)")
    file: Path = Field(description="file holding it, relative to `hub.state_dir`; mode 0600 (only the hub's "
                       "user may read it), else the hub refuses to start")


class IdentityGroups(Strict):
    """What OIDC and LDAP share (and LTI may): the group -> role map and the allow-list."""

    roles: RoleGroups = Field(RoleGroups(), description="the identity's groups -> roles; signing in again "
                              "brings the hub's groups in line with them")
    allowed_groups: tuple[str, ...] = Field((), description="who may sign in besides the members of the groups "
                                            "in `roles` and `courses`; a person in none of them is refused with a "
                                            "page saying so")
    courses: dict[str, CourseRoles] = Field(
        {}, description="`course` or `course/section` -> the identity's groups whose members are its students, "
        "TAs or instructors (a TA or instructor named on a course grades all its sections); how people join a "
        "course on a hub with several courses or sections, where `roles` names only admins"
    )

    @model_validator(mode="after")
    def someone_may_sign_in(self):
        named = [self.roles.mapping(), *(roles.model_dump() for roles in self.courses.values())]
        if not self.allowed_groups and not any(groups for mapping in named for groups in mapping.values()):
            raise ValueError("name at least one group in `roles`, `courses` or `allowed_groups`: nobody could sign in")
        return self

    def every_group(self) -> tuple[str, ...]:
        """The groups that matter: the allow-list and every group of the role maps, in order, once each."""
        seen: dict[str, None] = dict.fromkeys(self.allowed_groups)
        for mapping in (self.roles.mapping(), *(roles.model_dump() for roles in self.courses.values())):
            for groups in mapping.values():
                seen.update(dict.fromkeys(groups))
        return tuple(seen)


class Oidc(IdentityGroups):
    issuer: str = Field(description="the provider's issuer URL; its `/.well-known/openid-configuration` must "
                        "answer when the hub starts (Keycloak: `https://HOST/realms/REALM`; Azure AD: "
                        "`https://login.microsoftonline.com/TENANT/v2.0`)")
    client_id: str = Field(min_length=1, description="the hub's client id at the provider")
    client_secret: Secret = Field(
        Secret(env="D2LHUB_OIDC_CLIENT_SECRET", file=Path("oidc_client_secret")),
        description="where the hub's client secret is read from (never written in classroom.yaml)",
    )
    scopes: tuple[str, ...] = Field(("openid", "profile", "email"), description="scopes asked for; add the one "
                                    "that releases the groups claim if the provider needs it (e.g. `groups`)")
    username_claim: str = Field("preferred_username", min_length=1, description="the claim whose value is the "
                                "hub's user name (lower-cased); keep it the same as the old user names when "
                                "switching a class from native")
    groups_claim: str = Field("groups", min_length=1, description="the claim listing the person's groups "
                              "(a dotted path like `realm_access.roles` reaches into a nested claim)")
    claims_from: Literal["userinfo", "id_token"] = Field(
        "userinfo", description="where the user name and groups are read: the userinfo endpoint, or the ID token "
        "(checked against the issuer's keys: signature, issuer, audience, expiry); Azure AD puts groups only there"
    )
    verify_tls: bool = Field(True, description="check the provider's HTTPS certificate")

    @field_validator("issuer")
    @classmethod
    def issuer_is_a_url(cls, issuer: str) -> str:
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", issuer):
            raise ValueError(f"expected an http(s) URL, got {issuer!r}")
        return issuer.rstrip("/")

    @field_validator("scopes")
    @classmethod
    def asks_for_openid(cls, scopes: tuple[str, ...]) -> tuple[str, ...]:
        if "openid" not in scopes:
            raise ValueError("must include `openid`")
        return scopes


class LdapSearch(Strict):
    """Find the person's entry first (a directory whose DNs do not follow one pattern)."""

    base: str = Field(min_length=1, description="where people's entries are, e.g. `ou=people,dc=uni,dc=edu`")
    attribute: str = Field("uid", min_length=1, description="the attribute holding the sign-in name")
    bind_dn: str = Field("", description="the account that searches; empty: an anonymous search")
    bind_password: Secret = Field(
        Secret(env="D2LHUB_LDAP_BIND_PASSWORD", file=Path("ldap_bind_password")),
        description="where that account's password is read from (when bind_dn is set)",
    )


class Ldap(IdentityGroups):
    server: str = Field(min_length=1, description="the directory's host name or address")
    port: int | None = Field(None, ge=1, le=65535, description="its port; unset: 389, or 636 with `tls: on_connect`")
    tls: Literal["before_bind", "on_connect", "insecure"] = Field(
        "before_bind", description="before_bind: StartTLS before the password is sent; on_connect: LDAPS; "
        "insecure: no TLS (a test directory on loopback only)"
    )
    ca_file: Path | None = Field(None, description="CA certificate (PEM) the directory's certificate is checked "
                                 "against; unset: the system's")
    bind_dn_template: tuple[str, ...] = Field((), description="DNs tried with the sign-in name as `{username}`, "
                                              "e.g. `uid={username},ou=people,dc=uni,dc=edu`")
    search: LdapSearch | None = Field(None, description="find the person's DN by a search instead of a template")
    group_filter: str = Field("(|(member={userdn})(uniqueMember={userdn})(memberUid={uid}))",
                              description="how a group lists its members: a filter with `{userdn}` and `{uid}`, "
                              "run on each group named in `roles` and `allowed_groups` (groups are DNs here)")

    @model_validator(mode="after")
    def one_way_to_the_dn(self):
        if bool(self.bind_dn_template) == bool(self.search):
            raise ValueError("set exactly one of `bind_dn_template` and `search`")
        return self


class Auth(Strict):
    kind: Literal["native", "oidc", "ldap", "lti13"] = Field(
        "native", description="native: passwords kept (bcrypt) in the hub's database; oidc: an OpenID Connect "
        "provider (`auth.oidc`); ldap: a directory (`auth.ldap`); lti13: launch from the LMS (`auth.lti13`)"
    )
    open_signup: bool = Field(False, description="let anyone create an account (an admin still approves it); "
                              "native only")
    accounts: tuple[Account, ...] = Field((), description="the accounts the hub creates; a real class imports "
                                          "its roster (`d2lhub roster import`); with oidc or ldap, only name "
                                          "and role count (the role adds to what the groups give)")
    oidc: Oidc | None = Field(None, description="the OpenID Connect provider (with `kind: oidc`)")
    ldap: Ldap | None = Field(None, description="the directory (with `kind: ldap`)")
    lti13: Lti13 | None = Field(None, description="the LMS students launch from, when kind is lti13")

    @field_validator("accounts")
    @classmethod
    def unique_names(cls, accounts: tuple[Account, ...]) -> tuple[Account, ...]:
        seen: set[str] = set()
        for account in accounts:
            if account.name in seen:
                raise ValueError(f"user {account.name!r} is listed twice")
            seen.add(account.name)
        return accounts

    @model_validator(mode="after")
    def settings_of_the_kind(self):
        for kind in ("oidc", "ldap", "lti13"):
            if self.kind == kind and getattr(self, kind) is None and kind != "lti13":  # lti13: settings_for_kind
                raise ValueError(f"`{kind}` is required with `kind: {kind}`")
            if self.kind != kind and getattr(self, kind) is not None:
                raise ValueError(f"`{kind}` is set, but `kind` is {self.kind}")
        settings_for_kind(self)
        if self.kind in ("oidc", "ldap"):
            if self.open_signup:
                raise ValueError(f"`open_signup` works only with `kind: native` (kind is {self.kind})")
            with_password = [a.name for a in self.accounts if a.password]
            if with_password:
                raise ValueError(f"`accounts`: passwords are for `kind: native` only ({', '.join(with_password)})")
        return self
