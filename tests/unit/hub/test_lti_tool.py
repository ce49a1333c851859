"""auth.kind: lti13 -> the traits of the hub's LTI 1.3 tool, with no I/O (the key is made by facts)."""

from __future__ import annotations

import pytest
from jupyterhub.app import JupyterHub
from test_traits import applied, assert_every_trait_is_read, classroom_from, make_facts

from d2lhub.hub.lti import ClassroomLTI13Authenticator, JwksHandler, LaunchHandler

PLATFORM = {
    "issuer": "https://moodle.example.edu", "client_id": "Kq2f9", "deployment_id": "7:abc",
    "jwks_url": "https://moodle.example.edu/mod/lti/certs.php",
    "auth_login_url": "https://moodle.example.edu/mod/lti/auth.php",
    "token_url": "https://moodle.example.edu/mod/lti/token.php", "contexts": ["c0ffee"],
}


def test_lti13_classroom_configures_the_lti_tool(tmp_path):
    room = classroom_from({"auth": {"kind": "lti13", "lti13": PLATFORM,
                                    "accounts": [{"name": "root", "role": "admin", "password": "long-enough"}]},
                           "course": {"id": "dl101", "name": "Deep Learning 101"}}, tmp_path / "state")
    c = applied(room, make_facts())
    app = JupyterHub(config=c)
    assert app.authenticator_class is ClassroomLTI13Authenticator
    assert_every_trait_is_read(c)
    lti = c.LTI13Authenticator
    assert lti.issuer == PLATFORM["issuer"] and lti.client_id == {PLATFORM["client_id"]}
    assert lti.authorize_url == PLATFORM["auth_login_url"] and lti.jwks_endpoint == PLATFORM["jwks_url"]
    assert lti.uri_scheme == "http" and lti.tool_name == "Deep Learning 101"
    ours = c.ClassroomLTI13Authenticator
    assert ours.settings["deployment_id"] == "7:abc" and ours.settings["contexts"] == ("c0ffee",)
    assert ours.state_dir == str(tmp_path / "state")
    assert ours.context_groups == {"c0ffee": {"students": "nbgrader-dl101", "graders": "formgrade-dl101"}}
    assert c.Authenticator.allow_all is True and c.Authenticator.admin_users == {"root"}
    assert "NativeAuthenticator" not in c and "ClassroomAuthenticator" not in c
    assert app.load_groups == {"nbgrader-dl101": {"users": []}, "formgrade-dl101": {"users": []}}

    authenticator = ClassroomLTI13Authenticator(config=c)
    handlers = dict(authenticator.get_handlers(app))
    assert handlers["lti13/oauth_callback"] is LaunchHandler and handlers["/lti13/jwks"] is JwksHandler


LTI = "https://purl.imsglobal.org/spec/lti/claim/"


def tool(tmp_path) -> ClassroomLTI13Authenticator:
    room = classroom_from({"auth": {"kind": "lti13", "lti13": PLATFORM}}, tmp_path / "state")
    return ClassroomLTI13Authenticator(config=applied(room, make_facts()))


def launch_claims(**changes) -> dict:
    claims = {"sub": "s-1", "email": "Ada@uni.example", "nonce": "n-1", LTI + "deployment_id": "7:abc",
              LTI + "context": {"id": "c0ffee"}, LTI + "roles": ["http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"]}
    return {**claims, **changes}


def test_a_launch_must_come_from_the_classrooms_deployment_and_course_with_a_mapped_role(tmp_path):
    from tornado.web import HTTPError

    lti = tool(tmp_path)
    assert lti.launch_role(launch_claims()) == "student"
    for changes, words in (
        ({LTI + "deployment_id": "9:other"}, "deployment '9:other'"),
        ({LTI + "context": {"id": "another"}}, "LMS course 'another'"),
        ({LTI + "context": None}, "LMS course None"),
        ({LTI + "roles": ["http://purl.imsglobal.org/vocab/lis/v2/membership#Mentor"]}, "auth.lti13.roles"),
    ):
        with pytest.raises(HTTPError) as refused:
            lti.launch_role(launch_claims(**changes))
        assert refused.value.status_code == 403 and words in refused.value.log_message


def test_a_nonce_opens_once_and_names_stay_with_their_lms_user(tmp_path):
    from tornado.web import HTTPError

    from d2lhub import ltistate

    lti = tool(tmp_path)
    lti.accept_once(launch_claims())
    with pytest.raises(HTTPError, match="replayed nonce"):
        lti.accept_once(launch_claims())
    lti.accept_once(launch_claims(nonce="n-2"))

    assert lti.get_username(launch_claims()) == "ada"
    lti.remember("ada", launch_claims())
    assert ltistate.users(tmp_path / "state") == {"ada": "s-1"}
    with pytest.raises(HTTPError, match="belongs to another LMS user"):
        lti.get_username(launch_claims(sub="s-2", email="ada@elsewhere.example"))
    with pytest.raises(HTTPError, match="the platform must send it"):
        lti.get_username(launch_claims(email=None))
    ltistate.write(tmp_path / "state", "disabled.json", ["ada"])
    with pytest.raises(HTTPError, match="ada was dropped from this course"):
        lti.get_username(launch_claims())


def test_a_launch_joins_the_offering_of_its_context_and_leaves_other_offerings_alone(tmp_path):
    """On a hub with several courses each LMS context is one offering (`auth.lti13.courses`): a launch
    puts its person in that offering's group for their role, on a real (in-memory) hub database."""
    from jupyterhub import orm

    platform = {**PLATFORM, "contexts": ["ctx-a", "ctx-adv"], "courses": {"ctx-a": "intro/a", "ctx-adv": "adv"}}
    room = classroom_from({"courses": [{"id": "intro", "sections": [{"id": "a"}, {"id": "b"}]}, {"id": "adv"}],
                           "auth": {"kind": "lti13", "lti13": platform}}, tmp_path / "state")
    lti = ClassroomLTI13Authenticator(config=applied(room, make_facts()))
    db = orm.new_session_factory("sqlite://")()
    ada = orm.User(name="ada")
    db.add(ada)
    db.commit()

    def groups() -> list[str]:
        return sorted(group.name for group in ada.groups)

    lti.join_course(db, ada, "student", lti.context_groups["ctx-a"])
    assert groups() == ["nbgrader-intro-a"]
    lti.join_course(db, ada, "ta", lti.context_groups["ctx-adv"])  # a TA in the other course
    assert groups() == ["formgrade-adv", "nbgrader-intro-a"]
    lti.join_course(db, ada, "ta", lti.context_groups["ctx-a"])  # promoted in intro/a: out of its students
    assert groups() == ["formgrade-adv", "formgrade-intro-a"]
