"""LDAP sign-in against Debian's slapd, started by the test on a loopback port with a test directory:
people sign in with their directory password, their groups give their roles, and nobody else gets in."""

from __future__ import annotations

import ldap3
import pytest
from harness import launched_hub
from hubclient import Browser
from identity import SUFFIX, slapd

from d2lhub import hubapi, state
from d2lhub.ops.hubprocess import HubError

pytestmark = pytest.mark.integration

PEOPLE = {"ann": "ann-directory-pw", "tim": "tim-directory-pw", "prof": "prof-directory-pw", "eve": "eve-directory-pw",
          "root": "root-directory-pw", "bob": "bob-directory-pw"}
GROUPS = {"cs101-students": ["ann", "bob"], "cs101-tas": ["tim"], "cs101-staff": ["prof"], "chemistry": ["eve"],
          "hub-admins": ["root"]}
SEARCH_PASSWORD = "hub-search-pw"


def group(cn: str) -> str:
    return f"cn={cn},ou=groups,{SUFFIX}"


def ldap_settings(port: int, **more) -> dict:
    return {"kind": "ldap", "accounts": [], "ldap": {
        "server": "127.0.0.1", "port": port, "tls": "insecure",
        "roles": {"student": [group("cs101-students")], "ta": [group("cs101-tas")],
                  "instructor": [group("cs101-staff")], "admin": [group("hub-admins")]},
        **more}}


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    with slapd(tmp_path_factory.mktemp("slapd"), PEOPLE, GROUPS, SEARCH_PASSWORD) as port:
        yield port


@pytest.fixture(scope="module")
def ldap_hub(tmp_path_factory, docker_client, directory):
    """A hub that finds people by a search (its account's password from the environment)."""
    search = {"base": f"ou=people,{SUFFIX}", "attribute": "uid", "bind_dn": f"cn=hub,{SUFFIX}",
              "bind_password": {"env": "D2LTEST_LDAP_SEARCH_PW", "file": "unused"}}
    with pytest.MonkeyPatch.context() as env:
        env.setenv("D2LTEST_LDAP_SEARCH_PW", SEARCH_PASSWORD)
        yield from launched_hub(tmp_path_factory.mktemp("ldapclass"), docker_client,
                                auth=ldap_settings(directory, search=search))


def hub_user(hub, name: str) -> dict:
    return hubapi.api(hub.classroom, f"/users/{name}").json()


@pytest.mark.parametrize("name, groups, admin", [("ann", ["nbgrader-d2l"], False), ("tim", ["formgrade-d2l"], False),
                                                 ("prof", ["formgrade-d2l"], False), ("root", [], True)])
def test_directory_people_sign_in_with_their_roles(ldap_hub, name, groups, admin):
    response = Browser(ldap_hub.url).login(name, PEOPLE[name])
    assert response.status_code == 302, response.text[:500]
    user = hub_user(ldap_hub, name)
    assert sorted(user["groups"]) == groups
    assert user["admin"] is admin


def test_passwords_stay_out_of_the_log(ldap_hub):
    log = state.log_file(ldap_hub.classroom).read_text()
    assert "ann" in log
    assert not [p for p in [SEARCH_PASSWORD, *PEOPLE.values()] if p in log]


@pytest.mark.parametrize("name, password", [("ann", "not-her-password"), ("zed", "whatever-pw"), ("ann", " ")])
def test_wrong_password_and_unknown_user_are_refused(ldap_hub, name, password):
    response = Browser(ldap_hub.url).login(name, password)
    assert response.status_code == 403, response.status_code
    assert "Invalid username or password" in response.text


def test_someone_outside_the_class_groups_gets_a_clear_page(ldap_hub):
    response = Browser(ldap_hub.url).login("eve", PEOPLE["eve"])
    assert response.status_code == 403
    assert "eve is not in a group allowed to use this class" in response.text
    assert hubapi.api(ldap_hub.classroom, "/users/eve").status_code == 404  # no user made


def test_a_group_change_in_the_directory_applies_at_the_next_sign_in(ldap_hub, directory):
    """bob becomes a TA in the directory: his next sign-in moves him to the graders' group."""
    assert Browser(ldap_hub.url).login("bob", PEOPLE["bob"]).status_code == 302
    assert hub_user(ldap_hub, "bob")["groups"] == ["nbgrader-d2l"]
    bob = f"uid=bob,ou=people,{SUFFIX}"
    with ldap3.Connection(f"ldap://127.0.0.1:{directory}", f"cn=admin,{SUFFIX}", f"{SEARCH_PASSWORD}-root",
                          auto_bind=True) as admin:
        assert admin.modify(group("cs101-students"), {"member": [(ldap3.MODIFY_DELETE, [bob])]})
        assert admin.modify(group("cs101-tas"), {"member": [(ldap3.MODIFY_ADD, [bob])]})
    assert Browser(ldap_hub.url).login("bob", PEOPLE["bob"]).status_code == 302
    assert hub_user(ldap_hub, "bob")["groups"] == ["formgrade-d2l"]


def test_bind_dn_template_and_a_missing_search_password(tmp_path, docker_client, directory):
    """The other way to the DN (a template); and a search account without its password stops start-up."""
    template = {"bind_dn_template": [f"uid={{username}},ou=people,{SUFFIX}"]}
    hubs = launched_hub(tmp_path / "template", docker_client, auth=ldap_settings(directory, **template))
    hub = next(hubs)
    try:
        assert Browser(hub.url).login("tim", PEOPLE["tim"]).status_code == 302
        assert hub_user(hub, "tim")["groups"] == ["formgrade-d2l"]
        assert Browser(hub.url).login("tim", "wrong-password").status_code == 403
    finally:
        next(hubs, None)
    search = {"base": f"ou=people,{SUFFIX}", "bind_dn": f"cn=hub,{SUFFIX}",
              "bind_password": {"env": "D2LTEST_UNSET_PW", "file": "ldap_bind_password"}}
    with pytest.raises(HubError, match=r"auth.ldap.search.bind_password: no secret: set \$D2LTEST_UNSET_PW"):
        next(launched_hub(tmp_path / "nosecret", docker_client, auth=ldap_settings(directory, search=search)))
