"""auth.kind: lti13 -> the traits of the hub's LTI 1.3 tool, with no I/O (the key is made by facts)."""

from __future__ import annotations

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
    assert ours.course_groups == {"students": "nbgrader-dl101", "graders": "formgrade-dl101"}
    assert c.Authenticator.allow_all is True and c.Authenticator.admin_users == {"root"}
    assert "NativeAuthenticator" not in c and "ClassroomAuthenticator" not in c
    assert app.load_groups == {"nbgrader-dl101": {"users": []}, "formgrade-dl101": {"users": []}}

    authenticator = ClassroomLTI13Authenticator(config=c)
    handlers = dict(authenticator.get_handlers(app))
    assert handlers["lti13/oauth_callback"] is LaunchHandler and handlers["/lti13/jwks"] is JwksHandler
