"""classroom.yaml + the machine's facts -> JupyterHub traits, with no I/O.

`jupyterhub_config.py` gathers the facts (d2lhub.hub.facts) and calls `apply`; the unit
tests call `apply` on an empty traitlets Config and read what the hub will read.

The hub habits come from the largest deployments (zero-to-jupyterhub's hub config):
servers outlive the hub, the proxy token and cookie secret persist, the spawn page
appears at once, the proxy API is driven through curl.
"""

from __future__ import annotations

from pathlib import Path

from d2lhub import state
from d2lhub.config import Classroom
from d2lhub.courses import Offering, enrolment, find_offering
from d2lhub.diskspace import full_message
from d2lhub.hub import authroles, egress
from d2lhub.hub.auth import ClassroomAuthenticator
from d2lhub.hub.authsso import ClassroomLDAPAuthenticator, ClassroomOAuthenticator
from d2lhub.hub.facts import Facts
from d2lhub.hub.lti import ClassroomLTI13Authenticator
from d2lhub.hub.spawner import ClassroomSpawner
from d2lhub.hub.swarmspawner import ClassroomSwarmSpawner
from d2lhub.studentimage import DATA_MOUNT, HOME

TEMPLATES = Path(__file__).resolve().parent / "templates"
CLI_SCOPES = [
    "admin:users", "admin:servers", "admin:groups", "list:users", "read:users",
    "access:servers",  # prestart opens the lecture's kernel in each server
]
CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]


# What the graders of one offering (its `formgrade-<id>` group) may do to its students (its
# `nbgrader-<id>` group), and nothing more: no hub-wide admin flag, no other offering's students.
GRADER_SCOPES = (
    "access:servers!group={students}",  # open a student's server: look at their notebooks, help in their Lab
    "servers!group={students}",  # start a student's server to see their work, stop one that is stuck
    "list:users!group={students}",  # list their students (the hub's API; the Admin page stays admins')
    "read:users!group={students}",  # each student's name, groups, last activity and server state
    "read:groups!group={students}",  # who is in their offering's roster group
)


def groups(classroom: Classroom) -> dict[str, dict]:
    """Each offering's students' and graders' hub groups, filled from classroom.yaml's accounts
    (an admin who names courses grades in them); every group exists, empty or not."""
    found: dict[str, dict] = {}
    for offering in classroom.offerings:
        found[offering.students_group] = {"users": []}
        found[offering.graders_group] = {"users": []}
    for account in classroom.auth.accounts:
        for offering in enrolment(classroom.all_courses, account):
            group = offering.students_group if account.role == "student" else offering.graders_group
            found[group]["users"].append(account.name)
    return found


def members(classroom: Classroom) -> dict[str, list[str]]:
    """User name -> the offerings' hub groups classroom.yaml's accounts put them in."""
    found: dict[str, list[str]] = {}
    for group, spec in groups(classroom).items():
        for name in spec["users"]:
            found.setdefault(name, []).append(group)
    return found


def offering_titles(classroom: Classroom) -> dict[str, str]:
    """Hub group -> what the home page calls it, where the hub has several offerings (one needs no list)."""
    if len(classroom.offerings) == 1:
        return {}
    return {group: title for o in classroom.offerings
            for group, title in ((o.students_group, o.title), (o.graders_group, f"{o.title}, grading"))}


def grader_role(offering: Offering) -> dict:
    """The JupyterHub role of one offering's graders, on their group: scoped to that offering's students."""
    names = {"students": offering.students_group}
    return {
        "name": f"{offering.id}-graders",
        "description": f"graders of {offering.ref}: their students' servers, nobody else's",
        "scopes": [scope.format(**names) for scope in GRADER_SCOPES],
        "groups": [offering.graders_group],
    }


def managed(classroom: Classroom, facts: Facts, name: str, command: list[str]) -> dict:
    """A service the hub starts, through the launcher that records it and ties it to the hub's life."""
    records = str(state.services_dir(classroom))
    return {"name": name, "command": [facts.python, "-m", "d2lhub.hub.servicerun", records, name, "--", *command]}


def services_and_roles(classroom: Classroom, facts: Facts) -> tuple[list[dict], list[dict]]:
    """The hub's services (the CLI's token, the idle culler, the lecture schedule, the students'
    egress proxy) and their roles, and each offering's graders' role."""
    services = [{"name": state.CLI_SERVICE, "api_token": facts.cli_token}]
    roles = [{"name": state.CLI_SERVICE, "scopes": CLI_SCOPES, "services": [state.CLI_SERVICE]}]
    culling = classroom.culling
    if culling.enabled:
        services.append(managed(classroom, facts, "idle-culler", [
            facts.python, "-m", "jupyterhub_idle_culler", f"--timeout={culling.timeout}", f"--cull-every={culling.every}",
        ]))
        roles.append({"name": "idle-culler", "scopes": CULLER_SCOPES, "services": ["idle-culler"]})
    if classroom.prestart.schedule:
        services.append(managed(classroom, facts, "lecture-prestart", [
            facts.python, "-m", "d2lhub.cli", "prestart", "--on-schedule", "--config", str(facts.config_file),
        ]))
    if facts.egress_command:
        services.append(managed(classroom, facts, egress.SERVICE, list(facts.egress_command)))
    roles += [grader_role(offering) for offering in classroom.offerings]
    return services, roles


def apply_hub(c, classroom: Classroom, facts: Facts) -> None:
    hub = classroom.hub
    c.JupyterHub.bind_url = f"{state.public_url(classroom)}/"
    c.JupyterHub.hub_ip = facts.hub_address
    c.JupyterHub.hub_port = state.hub_api_port(classroom)
    c.JupyterHub.db_url = state.db_url(classroom)
    c.JupyterHub.cookie_secret_file = str(state.cookie_secret_file(classroom))
    c.JupyterHub.pid_file = str(state.pid_file(classroom))
    c.JupyterHub.cleanup_servers = False
    c.JupyterHub.last_activity_interval = 60
    c.JupyterHub.concurrent_spawn_limit = hub.concurrent_spawn_limit
    c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}
    if hub.https:
        c.JupyterHub.ssl_cert = str(hub.https.cert_file)
        c.JupyterHub.ssl_key = str(hub.https.key_file)

    c.ConfigurableHTTPProxy.command = [facts.proxy_command]
    c.ConfigurableHTTPProxy.api_url = state.proxy_api_url(classroom)
    c.ConfigurableHTTPProxy.auth_token = facts.proxy_token
    c.ConfigurableHTTPProxy.pid_file = str(state.proxy_pid_file(classroom))

    c.JupyterHub.template_paths = [str(TEMPLATES)]
    c.JupyterHub.template_vars = {
        "course_name": classroom.course.name,
        "course_term": classroom.course.term,
        "course_welcome": classroom.course.welcome,
        "course_help_url": classroom.course.help_url,
        "state_dir_full_message": full_message(classroom.hub.state_dir),  # error.html, for a database error on a full disk
        "offering_titles": offering_titles(classroom),  # home.html: the courses this user is in
    }
    c.JupyterHub.services, c.JupyterHub.load_roles = services_and_roles(classroom, facts)


def apply_lti13(c, classroom: Classroom) -> None:
    """Sign-in by launch from the LMS: jupyterhub-ltiauthenticator's tool, checked against auth.lti13."""
    lti = classroom.auth.lti13
    c.JupyterHub.authenticator_class = ClassroomLTI13Authenticator
    c.LTI13Authenticator.issuer = lti.issuer
    c.LTI13Authenticator.client_id = {lti.client_id}
    c.LTI13Authenticator.authorize_url = lti.auth_login_url
    c.LTI13Authenticator.jwks_endpoint = lti.jwks_url
    c.LTI13Authenticator.uri_scheme = "https" if classroom.hub.https else "http"
    c.LTI13Authenticator.tool_name = classroom.course.name
    c.ClassroomLTI13Authenticator.settings = lti.model_dump()
    c.ClassroomLTI13Authenticator.state_dir = str(classroom.hub.state_dir)
    c.ClassroomLTI13Authenticator.context_groups = {
        context: {"students": offering.students_group, "graders": offering.graders_group}
        for context in lti.contexts
        for offering in [find_offering(classroom.all_courses, lti.courses.get(context, classroom.offerings[0].ref))]
    }
    c.Authenticator.allow_all = True  # the launch's deployment, context and roles decide (ClassroomLTI13Authenticator)


def apply_auth(c, classroom: Classroom, facts: Facts) -> None:
    accounts = classroom.auth.accounts
    c.Authenticator.admin_users = {a.name for a in accounts if a.role == "admin"}
    if classroom.auth.kind == "native":
        apply_native(c, classroom, facts)
    elif classroom.auth.kind == "lti13":
        c.JupyterHub.load_groups = groups(classroom)
        apply_lti13(c, classroom)
    else:  # the identity's groups set the hub's groups (manage_groups): no load_groups
        apply_identity(c, classroom)
        (apply_oidc if classroom.auth.kind == "oidc" else apply_ldap)(c, classroom, facts)


def apply_native(c, classroom: Classroom, facts: Facts) -> None:
    c.JupyterHub.authenticator_class = ClassroomAuthenticator
    c.ClassroomAuthenticator.seed_passwords = facts.passwords
    c.ClassroomAuthenticator.roster_hashes_file = str(classroom.hub.state_dir / state.ROSTER_HASHES_FILE)
    c.NativeAuthenticator.open_signup = classroom.auth.open_signup
    c.NativeAuthenticator.minimum_password_length = 8
    c.Authenticator.allow_all = True  # NativeAuthenticator admits only approved accounts
    c.Authenticator.allowed_users = {a.name for a in classroom.auth.accounts if a.role != "admin"}
    c.JupyterHub.load_groups = groups(classroom)


def apply_identity(c, classroom: Classroom) -> None:
    """What OIDC and LDAP share: the identity's groups decide roles, hub groups and who may sign in."""
    auth = classroom.auth
    identity = auth.oidc or auth.ldap
    c.Authenticator.allow_all = False  # the allow-list is the classroom's groups, never anyone the provider knows
    c.Authenticator.allow_existing_users = False  # users of a former kind sign in through their groups too
    c.Authenticator.manage_groups = True  # each sign-in brings the hub's groups in line with the identity's
    c.Authenticator.enable_auth_state = False  # the provider's tokens are not kept
    c.ClassroomIdentity.role_groups = {role: list(names) for role, names in identity.roles.mapping().items()}
    c.ClassroomIdentity.allowed_groups_extra = list(identity.allowed_groups)
    c.ClassroomIdentity.account_roles = {a.name: a.role for a in auth.accounts}
    c.ClassroomIdentity.course_memberships = authroles.course_memberships(classroom.all_courses, identity)
    c.ClassroomIdentity.account_groups = members(classroom)
    one = classroom.offerings[0] if len(classroom.offerings) == 1 else None
    c.ClassroomIdentity.newcomer_groups = [one.students_group] if one else []
    c.ClassroomIdentity.shared_groups = sorted({g for p in classroom.profiles for g in p.groups})


def apply_oidc(c, classroom: Classroom, facts: Facts) -> None:
    oidc = classroom.auth.oidc
    c.JupyterHub.authenticator_class = ClassroomOAuthenticator
    settings = c.ClassroomOAuthenticator
    settings.authorize_url = facts.sign_in["authorize_url"]
    settings.token_url = facts.sign_in["token_url"]
    if oidc.claims_from == "id_token":
        settings.userdata_from_id_token = True
        settings.jwks_url = facts.sign_in["jwks_url"]
        settings.oidc_issuer = facts.sign_in["issuer"]  # as the discovery document spells it
    else:
        settings.userdata_url = facts.sign_in["userdata_url"]
    settings.client_id = oidc.client_id
    settings.client_secret = facts.sign_in["client_secret"]
    settings.scope = list(oidc.scopes)
    settings.username_claim = oidc.username_claim
    settings.groups_claim = oidc.groups_claim
    settings.auth_state_groups_key = f"oauth_user.{oidc.groups_claim}"
    settings.validate_server_cert = oidc.verify_tls
    settings.login_service = "your institution's account"
    settings.enable_pkce = True
    settings.basic_auth = True  # client_secret_basic: the OIDC default every provider takes


def apply_ldap(c, classroom: Classroom, facts: Facts) -> None:
    ldap = classroom.auth.ldap
    c.JupyterHub.authenticator_class = ClassroomLDAPAuthenticator
    settings = c.ClassroomLDAPAuthenticator
    settings.server_address = ldap.server
    if ldap.port:
        settings.server_port = ldap.port
    settings.tls_strategy = ldap.tls
    if ldap.ca_file:
        settings.tls_kwargs = {"ca_certs_file": str(ldap.ca_file)}
    settings.allowed_groups = list(ldap.every_group())  # the groups whose membership is looked up
    settings.group_search_filter = ldap.group_filter
    if ldap.search is None:
        settings.bind_dn_template = list(ldap.bind_dn_template)
    else:
        settings.lookup_dn = True
        settings.user_search_base = ldap.search.base
        settings.user_attribute = ldap.search.attribute
        settings.lookup_dn_search_user = ldap.search.bind_dn
        settings.lookup_dn_search_password = facts.sign_in.get("bind_password", "")
        settings.lookup_dn_user_dn_attribute = ldap.search.attribute


def apply_spawner(c, classroom: Classroom, facts: Facts) -> None:
    swarm = classroom.spawner.kind == "swarm"
    c.JupyterHub.spawner_class = ClassroomSwarmSpawner if swarm else ClassroomSpawner
    c.ClassroomMixin.classroom = classroom
    several = len(classroom.all_courses) > 1
    c.ClassroomMixin.course_dir = str((state.courses_dir if several else state.course_dir)(classroom))
    c.ClassroomMixin.images = facts.images
    c.ClassroomMixin.gpu_state_file = str(state.gpu_state_file(classroom))
    c.DockerSpawner.image = facts.images[classroom.profiles[0].image]
    c.DockerSpawner.allowed_images = sorted(facts.images.values())
    c.DockerSpawner.pull_policy = "never"  # images are built before the class, never pulled mid-spawn
    c.DockerSpawner.cmd = ["d2lhub-start"]
    c.DockerSpawner.prefix = classroom.spawner.instance
    c.DockerSpawner.network_name = facts.network_name
    c.DockerSpawner.use_internal_ip = True
    c.DockerSpawner.remove = True
    c.DockerSpawner.notebook_dir = HOME
    c.DockerSpawner.client_kwargs = {"max_pool_size": classroom.spawner.docker_workers}
    c.Spawner.default_url = "/lab/tree/d2l"
    c.Spawner.start_timeout = classroom.hub.start_timeout
    c.Spawner.http_timeout = classroom.hub.start_timeout
    c.Spawner.environment = {
        "D2LHUB_COURSE": classroom.course.id,
        "MXNET_HOME": f"{DATA_MOUNT}/mxnet",
        **egress.student_environment(classroom.network, facts.egress_proxy, facts.hub_address),
    }


def apply(c, classroom: Classroom, facts: Facts) -> None:
    """Set every JupyterHub trait the classroom decides on `c` (a traitlets Config)."""
    apply_hub(c, classroom, facts)
    apply_auth(c, classroom, facts)
    apply_spawner(c, classroom, facts)
