"""classroom.yaml + hand-made Facts -> the traits JupyterHub reads, with no Docker and no I/O.

Each test applies the traits to an empty traitlets Config and reads them back the way the hub
does: from the Config sections, from a JupyterHub application built on that Config, and from
a spawner built on it. A trait dropped from d2lhub.hub.traits fails one of these assertions.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from jupyterhub.app import JupyterHub
from jupyterhub.objects import Hub
from jupyterhub.proxy import ConfigurableHTTPProxy
from traitlets.config import Config

from d2lhub import state
from d2lhub.config import Classroom, load
from d2lhub.hub import traits
from d2lhub.hub.auth import ClassroomAuthenticator
from d2lhub.hub.facts import Facts
from d2lhub.hub.spawner import ClassroomSpawner
from d2lhub.hub.swarmspawner import ClassroomSwarmSpawner
from d2lhub.studentimage import DATA_MOUNT, HOME

REPO = Path(__file__).resolve().parents[3]
STUDENT = "d2lhub/student:1111aaaa"
STUDENT_GPU = "d2lhub/student-gpu:2222bbbb"
PASSWORDS = {"admin": "admin-password", "instructor": "instructor-pw", "student1": "student1-pw"}

# ---------------------------------------------------------------------------------------------
# No I/O: an audit hook (process-wide, so switched on only inside `no_io`) records every file
# opened other than Python's own imports, every file-system change, socket and process.

_watching: list[list[str]] = []
_CHANGES = {
    "os.mkdir", "os.rmdir", "os.remove", "os.rename", "os.replace", "os.chmod", "os.chown",
    "os.symlink", "os.link", "os.truncate", "os.utime", "shutil.rmtree", "shutil.copyfile", "shutil.move",
    "socket.connect", "socket.bind", "socket.getaddrinfo", "subprocess.Popen", "os.system", "os.posix_spawn",
    "os.exec", "os.fork",
}
_IMPORTS = (".py", ".pyc", ".so", ".pth")


def _audit(event: str, args: tuple) -> None:
    if not _watching:
        return
    if event == "open":
        path = args[0]
        if isinstance(path, int) or str(path).endswith(_IMPORTS) or "__pycache__" in str(path):
            return
        _watching[-1].append(f"open {path} {args[1]!r}")
    elif event in _CHANGES:
        _watching[-1].append(f"{event} {args!r}"[:200])


sys.addaudithook(_audit)


@contextmanager
def no_io():
    seen: list[str] = []
    _watching.append(seen)
    try:
        yield
    finally:
        _watching.pop()
    assert not seen, f"traits.apply did I/O: {seen}"


# ---------------------------------------------------------------------------------------------


def make_facts(**changes) -> Facts:
    values = {
        "config_file": Path("/srv/class/classroom.yaml"),
        "images": {"student": STUDENT},
        "network_name": "d2lhub-students",
        "hub_address": "172.31.0.1",
        "proxy_command": "/usr/local/bin/configurable-http-proxy",
        "proxy_token": "proxy-secret",
        "cli_token": "cli-secret",
        "passwords": PASSWORDS,
        "python": "/opt/venv/bin/python",
    }
    values.update(changes)
    return Facts(**values)


def applied(classroom: Classroom, facts: Facts) -> Config:
    c = Config()
    with no_io():
        traits.apply(c, classroom, facts)
    return c


def classroom_from(data: dict, state_dir: Path) -> Classroom:
    data = {**data, "hub": {**data.get("hub", {}), "state_dir": str(state_dir)}}
    return Classroom.model_validate(data)


def student(name: str = "student1", groups: tuple[str, ...] = ()) -> SimpleNamespace:
    return SimpleNamespace(
        name=name, id=7, escaped_name=name, url=f"/user/{name}/", base_url="/", settings={}, orm_user=None,
        groups=[SimpleNamespace(name=g) for g in groups], admin=False,
    )


def assert_every_trait_is_read(c: Config) -> None:
    """Each key set is a configurable trait of a class the hub instantiates (a misspelt one is ignored silently)."""
    readers = [JupyterHub, ConfigurableHTTPProxy, c.JupyterHub.authenticator_class, c.JupyterHub.spawner_class]
    classes = {klass.__name__: klass for reader in readers for klass in reader.mro() if hasattr(klass, "class_trait_names")}
    for section, values in c.items():
        assert section in classes, f"no class the hub uses is configured as {section}"
        configurable = set(classes[section].class_trait_names(config=True))
        assert set(values) <= configurable, f"{section}: not traits: {set(values) - configurable}"


@pytest.fixture
def default_classroom(tmp_path) -> Classroom:
    """The repository's classroom.yaml, its state folder moved to a folder that does not exist."""
    room = load(REPO / "classroom.yaml")
    return room.model_copy(update={"hub": room.hub.model_copy(update={"state_dir": tmp_path / "state"})})


# The repository's default classroom -------------------------------------------------------------


def test_default_classroom_hub_traits(default_classroom, tmp_path):
    facts = make_facts()
    c = applied(default_classroom, facts)
    folder = tmp_path / "state"
    assert not folder.exists(), "apply created the state folder"
    assert_every_trait_is_read(c)

    app = JupyterHub(config=c)  # what the hub reads from this Config
    assert app.bind_url == "http://127.0.0.1:8000/"
    assert app.hub_ip == "172.31.0.1"
    assert app.hub_port == 8081
    assert app.db_url == f"sqlite:///{folder}/jupyterhub.sqlite"
    assert app.cookie_secret_file == str(folder / "jupyterhub_cookie_secret")
    assert app.pid_file == str(folder / "jupyterhub.pid")
    assert app.cleanup_servers is False  # servers outlive a hub restart
    assert app.last_activity_interval == 60
    assert app.concurrent_spawn_limit == 200
    assert app.tornado_settings == {"slow_spawn_timeout": 0}
    assert not app.ssl_cert and not app.ssl_key
    assert app.template_paths == [str(REPO / "d2lhub" / "hub" / "templates")]
    assert Path(app.template_paths[0], "login.html").is_file()
    assert app.template_vars["course_name"] == "Dive into Deep Learning"
    assert app.template_vars["course_term"] == "Demo term"
    assert app.template_vars["course_welcome"].startswith("Sign in to open your own JupyterLab")
    assert app.template_vars["course_help_url"] == ""
    assert str(folder) in app.template_vars["state_dir_full_message"]
    assert app.template_vars["offering_titles"] == {}  # one course: no list of courses on the home page

    proxy = c.ConfigurableHTTPProxy
    assert proxy.command == ["/usr/local/bin/configurable-http-proxy"]
    assert proxy.api_url == "http://127.0.0.1:8001"
    assert proxy.auth_token == "proxy-secret"
    assert proxy.pid_file == str(folder / "proxy.pid")


def test_default_classroom_services_and_roles(default_classroom):
    facts = make_facts()
    app = JupyterHub(config=applied(default_classroom, facts))
    services = {s["name"]: s for s in app.services}
    assert set(services) == {state.CLI_SERVICE, "idle-culler"}  # the demo class has no prestart schedule
    assert services[state.CLI_SERVICE] == {"name": "d2lhub-cli", "api_token": "cli-secret"}
    records = str(default_classroom.hub.state_dir / "services")
    assert services["idle-culler"]["command"] == [  # through the launcher that records it (no orphan after a crash)
        "/opt/venv/bin/python", "-m", "d2lhub.hub.servicerun", records, "idle-culler", "--",
        "/opt/venv/bin/python", "-m", "jupyterhub_idle_culler", "--timeout=3600", "--cull-every=300",
    ]
    roles = {r["name"]: r for r in app.load_roles}
    assert set(roles) == {"d2lhub-cli", "idle-culler", "d2l-graders"}
    assert roles["d2lhub-cli"]["services"] == ["d2lhub-cli"]
    assert roles["d2lhub-cli"]["scopes"] == [
        "admin:users", "admin:servers", "admin:groups", "list:users", "read:users", "access:servers",
    ]
    assert roles["idle-culler"] == {
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    }


def test_default_classroom_authenticator(default_classroom, tmp_path):
    app = JupyterHub(config=(c := applied(default_classroom, make_facts())))
    assert app.authenticator_class is ClassroomAuthenticator
    assert c.ClassroomAuthenticator.seed_passwords == PASSWORDS
    assert c.ClassroomAuthenticator.roster_hashes_file == str(tmp_path / "state" / "roster_accounts.json")
    assert c.NativeAuthenticator.open_signup is False
    assert c.NativeAuthenticator.minimum_password_length == 8
    assert c.Authenticator.allow_all is True
    assert c.Authenticator.allowed_users == {"instructor", "student1", "student2", "student3"}
    assert c.Authenticator.admin_users == {"admin"}
    assert app.load_groups == {
        "nbgrader-d2l": {"users": ["student1", "student2", "student3"]},
        "formgrade-d2l": {"users": ["instructor"]},
    }


def test_default_classroom_spawner(default_classroom, tmp_path):
    c = applied(default_classroom, make_facts())
    folder = tmp_path / "state"
    assert JupyterHub(config=c).spawner_class is ClassroomSpawner
    assert c.ClassroomMixin.classroom is default_classroom
    assert c.ClassroomMixin.course_dir == str(folder / "course")
    assert c.ClassroomMixin.images == {"student": STUDENT}
    assert c.ClassroomMixin.gpu_state_file == str(folder / "gpus.json")

    docker = c.DockerSpawner
    assert docker.image == STUDENT
    assert docker.allowed_images == [STUDENT]
    assert docker.pull_policy == "never"
    assert docker.cmd == ["d2lhub-start"]
    assert docker.prefix == "d2lhub"
    assert docker.network_name == "d2lhub-students"
    assert docker.use_internal_ip is True
    assert docker.remove is True
    assert docker.notebook_dir == HOME
    assert docker.client_kwargs == {"max_pool_size": 8}

    assert c.Spawner.default_url == "/lab/tree/d2l"
    assert c.Spawner.start_timeout == 180
    assert c.Spawner.http_timeout == 180
    assert c.Spawner.environment == {"D2LHUB_COURSE": "d2l", "MXNET_HOME": f"{DATA_MOUNT}/mxnet", "D2LHUB_EGRESS": "allowlist"}

    # The spawner the hub makes for a student reads all of it (built without a Docker client).
    made = ClassroomSpawner(config=c, user=student(), hub=Hub())
    assert made.classroom == default_classroom
    assert made.image == STUDENT
    assert made.network_name == "d2lhub-students"
    assert made.pull_policy == "never"
    assert made.remove is True
    assert made.environment["D2LHUB_COURSE"] == "d2l"
    assert made.start_timeout == 180
    assert made.options_form == ""  # one profile: no form
    assert not (tmp_path / "state").exists()


def test_apply_does_no_io_even_for_a_missing_state_folder(tmp_path):
    """The state folder, the HTTPS files and the config file need not exist: apply only names them."""
    missing = tmp_path / "nowhere" / "state"
    room = classroom_from(
        {"hub": {"https": {"cert_file": str(tmp_path / "no.crt"), "key_file": str(tmp_path / "no.key")}},
         "prestart": {"schedule": ["50 8 * * mon"]}},
        missing,
    )
    before = sorted(tmp_path.iterdir())
    applied(room, make_facts(config_file=tmp_path / "missing.yaml"))  # no_io() asserts
    assert not missing.exists()
    assert sorted(tmp_path.iterdir()) == before


def test_the_audit_hook_catches_io(tmp_path):
    """no_io() would see the I/O apply must not do (so the tests above do prove something)."""
    with pytest.raises(AssertionError, match="did I/O"), no_io():
        state.cli_token(classroom_from({}, tmp_path / "made"))
    with pytest.raises(AssertionError, match="did I/O"), no_io():
        os.makedirs(tmp_path / "x")


# A CPU and a GPU profile --------------------------------------------------------------------------

GPU_CLASS = {
    "profiles": [
        {"name": "cpu", "display_name": "CPU"},
        {"name": "gpu", "display_name": "One GPU", "image": "student_gpu", "gpus": 1, "groups": ["gpu-students"]},
    ],
    "gpus": {"devices": {"local": ["0"]}},
}


def test_cpu_and_gpu_profiles(tmp_path):
    room = classroom_from(GPU_CLASS, tmp_path / "state")
    images = {"student": STUDENT, "student_gpu": STUDENT_GPU}
    c = applied(room, make_facts(images=images))
    assert_every_trait_is_read(c)
    assert c.JupyterHub.spawner_class is ClassroomSpawner
    assert c.ClassroomMixin.images == images
    assert c.DockerSpawner.image == STUDENT  # the first profile's image
    assert c.DockerSpawner.allowed_images == sorted([STUDENT, STUDENT_GPU])
    assert not (tmp_path / "state").exists()

    plain = ClassroomSpawner(config=c, user=student("ann"), hub=Hub())
    gpu_student = ClassroomSpawner(config=c, user=student("gus", ("gpu-students",)), hub=Hub())
    assert plain.images == images
    assert [p.name for p in plain.allowed_profiles()] == ["cpu"]
    assert [p.name for p in gpu_student.allowed_profiles()] == ["cpu", "gpu"]
    gpu_student._apply_profile(room.profile("gpu"))
    assert gpu_student.image == STUDENT_GPU


def test_a_gpu_profile_first_makes_the_gpu_image_the_default(tmp_path):
    room = classroom_from({**GPU_CLASS, "profiles": GPU_CLASS["profiles"][::-1]}, tmp_path / "state")
    c = applied(room, make_facts(images={"student": STUDENT, "student_gpu": STUDENT_GPU}))
    assert c.DockerSpawner.image == STUDENT_GPU


# A Swarm class ----------------------------------------------------------------------------------


def test_swarm_class(tmp_path):
    room = classroom_from({"spawner": {"kind": "swarm", "instance": "lab-b", "docker_workers": 16}}, tmp_path / "state")
    c = applied(room, make_facts(network_name="lab-b-swarm", hub_address="10.1.2.3"))
    assert_every_trait_is_read(c)
    assert JupyterHub(config=c).spawner_class is ClassroomSwarmSpawner
    assert c.JupyterHub.hub_ip == "10.1.2.3"
    assert c.DockerSpawner.prefix == "lab-b"
    assert c.DockerSpawner.network_name == "lab-b-swarm"
    assert c.DockerSpawner.client_kwargs == {"max_pool_size": 16}

    made = ClassroomSwarmSpawner(config=c, user=student(), hub=Hub())  # DockerSpawner's section reaches the Swarm spawner
    assert made.classroom == room
    assert made.image == STUDENT
    assert made.network_name == "lab-b-swarm"
    assert made.prefix == "lab-b"
    assert made.cmd == ["d2lhub-start"]
    assert made.remove is True  # SwarmSpawner's own (a plain attribute: the DockerSpawner setting is not read here)
    assert made.environment == {"D2LHUB_COURSE": "d2l", "MXNET_HOME": f"{DATA_MOUNT}/mxnet", "D2LHUB_EGRESS": "open"}  # a Swarm: the proxy would be on one host only


def test_docker_class_is_not_swarm(tmp_path):
    c = applied(classroom_from({}, tmp_path / "state"), make_facts())
    assert c.JupyterHub.spawner_class is ClassroomSpawner
    assert c.JupyterHub.spawner_class is not ClassroomSwarmSpawner


# HTTPS, services, auth, database ------------------------------------------------------------------


def test_https(tmp_path):
    cert, key = tmp_path / "hub.crt", tmp_path / "hub.key"
    room = classroom_from(
        {"hub": {"ip": "0.0.0.0", "port": 443, "https": {"cert_file": str(cert), "key_file": str(key)}}},
        tmp_path / "state",
    )
    app = JupyterHub(config=applied(room, make_facts()))
    assert app.ssl_cert == str(cert)
    assert app.ssl_key == str(key)
    assert app.bind_url == "https://0.0.0.0:443/"
    assert app.hub_port == 443 + 81


def test_culler_off_and_lecture_prestart_on(tmp_path):
    room = classroom_from(
        {"culling": {"enabled": False}, "prestart": {"schedule": ["50 8 * * mon,wed"], "timezone": "Europe/Berlin"}},
        tmp_path / "state",
    )
    app = JupyterHub(config=applied(room, make_facts(config_file=Path("/srv/class/classroom.yaml"))))
    services = {s["name"]: s for s in app.services}
    assert set(services) == {"d2lhub-cli", "lecture-prestart"}
    assert services["lecture-prestart"]["command"] == [
        "/opt/venv/bin/python", "-m", "d2lhub.hub.servicerun", str(tmp_path / "state" / "services"), "lecture-prestart", "--",
        "/opt/venv/bin/python", "-m", "d2lhub.cli", "prestart", "--on-schedule", "--config", "/srv/class/classroom.yaml",
    ]
    assert "api_token" not in services["lecture-prestart"]  # it reads the CLI's token from the state folder
    assert [r["name"] for r in app.load_roles] == ["d2lhub-cli", "d2l-graders"]  # no culler, no culler role


def test_culler_settings_reach_its_command(tmp_path):
    room = classroom_from({"culling": {"timeout": 900, "every": 60}}, tmp_path / "state")
    services = {s["name"]: s for s in applied(room, make_facts()).JupyterHub.services}
    assert services["idle-culler"]["command"][-2:] == ["--timeout=900", "--cull-every=60"]
    assert "lecture-prestart" not in services


def test_accounts_groups_and_signup(tmp_path):
    room = classroom_from(
        {
            "course": {"id": "ml101"},
            "auth": {
                "open_signup": True,
                "accounts": [
                    {"name": "root", "role": "admin"},
                    {"name": "prof", "role": "instructor"},
                    {"name": "helper", "role": "ta"},
                    {"name": "ann", "role": "student"},
                    {"name": "bob", "role": "student"},
                ],
            },
        },
        tmp_path / "state",
    )
    c = applied(room, make_facts(passwords={"ann": "ann-password"}))
    assert c.Authenticator.allowed_users == {"prof", "helper", "ann", "bob"}
    assert c.Authenticator.admin_users == {"root"}
    assert c.NativeAuthenticator.open_signup is True
    assert c.ClassroomAuthenticator.seed_passwords == {"ann": "ann-password"}
    assert c.JupyterHub.load_groups == {
        "nbgrader-ml101": {"users": ["ann", "bob"]},
        "formgrade-ml101": {"users": ["prof", "helper"]},
    }
    assert c.Spawner.environment["D2LHUB_COURSE"] == "ml101"


def test_postgres_db_url_and_hub_settings(tmp_path):
    url = "postgresql://hub:secret@db.example:5432/jupyterhub"
    room = classroom_from(
        {"hub": {"db_url": url, "port": 9000, "concurrent_spawn_limit": 30, "start_timeout": 300},
         "spawner": {"instance": "room-2"}},
        tmp_path / "state",
    )
    c = applied(room, make_facts())
    assert c.JupyterHub.db_url == url
    assert c.JupyterHub.cookie_secret_file == str(tmp_path / "state" / "jupyterhub_cookie_secret")
    assert c.JupyterHub.bind_url == "http://127.0.0.1:9000/"
    assert c.JupyterHub.hub_port == 9081
    assert c.ConfigurableHTTPProxy.api_url == "http://127.0.0.1:9001"
    assert c.JupyterHub.concurrent_spawn_limit == 30
    assert c.Spawner.start_timeout == c.Spawner.http_timeout == 300
    assert c.DockerSpawner.prefix == "room-2"


# Several courses and sections: hub groups per offering, graders' roles scoped to their students --------

TERM = {
    "courses": [
        {"id": "intro", "name": "Intro to DL", "sections": [{"id": "a"}, {"id": "b"}]},
        {"id": "adv", "name": "Advanced DL"},
    ],
    "auth": {"accounts": [
        {"name": "root", "role": "admin"},
        {"name": "prof", "role": "instructor", "courses": ["intro", "adv"]},
        {"name": "tina", "role": "ta", "courses": ["intro/a"]},
        {"name": "ann", "role": "student", "courses": ["intro/a", "adv"]},
        {"name": "bob", "role": "student", "courses": ["intro/b"]},
    ]},
}


def test_each_offering_has_its_own_groups_from_the_accounts_enrolment(tmp_path):
    app = JupyterHub(config=applied(classroom_from(TERM, tmp_path / "state"), make_facts()))
    assert app.load_groups == {
        "nbgrader-intro-a": {"users": ["ann"]}, "formgrade-intro-a": {"users": ["prof", "tina"]},
        "nbgrader-intro-b": {"users": ["bob"]}, "formgrade-intro-b": {"users": ["prof"]},
        "nbgrader-adv": {"users": ["ann"]}, "formgrade-adv": {"users": ["prof"]},
    }
    assert "root" not in {name for group in app.load_groups.values() for name in group["users"]}
    assert app.template_vars["offering_titles"] == {  # the home page lists a user's own
        "nbgrader-intro-a": "Intro to DL (a)", "formgrade-intro-a": "Intro to DL (a), grading",
        "nbgrader-intro-b": "Intro to DL (b)", "formgrade-intro-b": "Intro to DL (b), grading",
        "nbgrader-adv": "Advanced DL", "formgrade-adv": "Advanced DL, grading",
    }


def test_graders_roles_reach_only_their_offerings_students_and_nobody_is_made_admin(tmp_path):
    c = applied(classroom_from(TERM, tmp_path / "state"), make_facts())
    assert c.Authenticator.admin_users == {"root"}  # instructors and TAs are not the hub's admins
    roles = {r["name"]: r for r in JupyterHub(config=c).load_roles}
    assert set(roles) == {"d2lhub-cli", "idle-culler", "intro-a-graders", "intro-b-graders", "adv-graders"}
    assert roles["intro-a-graders"]["groups"] == ["formgrade-intro-a"]
    assert roles["intro-a-graders"]["scopes"] == [
        "access:servers!group=nbgrader-intro-a", "servers!group=nbgrader-intro-a", "list:users!group=nbgrader-intro-a",
        "read:users!group=nbgrader-intro-a", "read:groups!group=nbgrader-intro-a",
    ]
    for role in (roles["intro-b-graders"], roles["adv-graders"]):
        assert all(scope.endswith("!group=" + role["groups"][0].replace("formgrade-", "nbgrader-")) for scope in role["scopes"])
    every = [scope for role in roles.values() if role["name"].endswith("-graders") for scope in role["scopes"]]
    assert all("!group=nbgrader-" in scope for scope in every)  # never hub-wide
    assert not any(scope.startswith(("admin", "admin-ui")) for scope in every)


def test_several_courses_are_built_and_mounted_each_in_its_own_folder(tmp_path):
    room = classroom_from(TERM, tmp_path / "state")
    c = applied(room, make_facts())
    assert c.ClassroomMixin.course_dir == str(tmp_path / "state" / "courses")
    assert state.built_course(room, "adv") == tmp_path / "state" / "courses" / "adv"
    one = classroom_from({}, tmp_path / "one")
    assert state.built_course(one, "d2l") == tmp_path / "one" / "course"


def test_sign_in_groups_map_to_offerings_with_oidc_and_lti(tmp_path):
    oidc = {"issuer": "https://sso.example.edu", "client_id": "hub", "roles": {"admin": ["it"]},
            "courses": {"intro/a": {"student": ["intro-a-students"], "ta": ["intro-a-tas"]},
                        "intro": {"instructor": ["intro-staff"]}, "adv": {"student": ["adv-students"]}}}
    room = classroom_from({**TERM, "auth": {"kind": "oidc", "oidc": oidc,
                                            "accounts": [{"name": "bob", "role": "student", "courses": ["intro/b"]}]}},
                          tmp_path / "state")
    c = applied(room, make_facts(passwords={}, sign_in={"authorize_url": "a", "token_url": "t", "userdata_url": "u",
                                                          "client_secret": "s"}))
    assert c.ClassroomIdentity.course_memberships == {
        "intro-a-students": ["nbgrader-intro-a"], "intro-a-tas": ["formgrade-intro-a"],
        "intro-staff": ["formgrade-intro-a", "formgrade-intro-b"], "adv-students": ["nbgrader-adv"],
    }
    assert c.ClassroomIdentity.account_groups == {"bob": ["nbgrader-intro-b"]}
    assert c.ClassroomIdentity.newcomer_groups == []  # several offerings: an allowed group alone joins none
    assert "load_groups" not in c.JupyterHub

    lti = {"issuer": "https://lms.example.edu", "client_id": "k", "deployment_id": "1", "jwks_url": "https://lms/jwks",
           "auth_login_url": "https://lms/auth", "token_url": "https://lms/token", "contexts": ["ctx-a", "ctx-adv"],
           "courses": {"ctx-a": "intro/a", "ctx-adv": "adv"}}
    c = applied(classroom_from({**TERM, "auth": {"kind": "lti13", "lti13": lti}}, tmp_path / "lti"), make_facts())
    assert c.ClassroomLTI13Authenticator.context_groups == {
        "ctx-a": {"students": "nbgrader-intro-a", "graders": "formgrade-intro-a"},
        "ctx-adv": {"students": "nbgrader-adv", "graders": "formgrade-adv"},
    }


@pytest.mark.parametrize("auth, words", [
    ({"kind": "oidc", "oidc": {"issuer": "https://sso", "client_id": "h", "roles": {"student": ["all"]}}},
     "auth.oidc.roles.student: with several courses or sections, people join one in `auth.oidc.courses`"),
    ({"kind": "oidc", "oidc": {"issuer": "https://sso", "client_id": "h", "courses": {"intro": {"student": ["x"]}}}},
     "auth.oidc.courses.intro: course intro has sections; name one (intro/a, intro/b)"),
    ({"kind": "oidc", "oidc": {"issuer": "https://sso", "client_id": "h", "courses": {"nope": {"ta": ["x"]}}}},
     "auth.oidc.courses.nope: no course or section 'nope'"),
    ({"kind": "lti13", "lti13": {"issuer": "https://lms", "client_id": "k", "deployment_id": "1",
                                 "jwks_url": "https://lms/j", "auth_login_url": "https://lms/a",
                                 "token_url": "https://lms/t", "contexts": ["ctx-a", "ctx-b"], "courses": {"ctx-a": "adv"}}},
     "auth.lti13.courses: with several courses or sections, name the course or section of context ctx-b"),
])
def test_sign_in_course_maps_are_checked(tmp_path, auth, words):
    with pytest.raises(Exception) as refused:
        classroom_from({**TERM, "auth": auth}, tmp_path / "state")
    assert words in str(refused.value)
