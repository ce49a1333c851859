"""classroom.yaml -> JupyterHub traits. `jupyterhub_config.py` calls `apply(c)` and nothing else.

The hub habits come from the largest deployments (zero-to-jupyterhub's hub
config): servers outlive the hub, the proxy token and cookie secret persist,
the spawn page appears at once, the proxy API is driven through curl.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import sys
from pathlib import Path

from d2lhub import bootstrap, diskspace, firewall
from d2lhub.grading import group_names
from d2lhub.auth import ROSTER_HASHES_FILE, ClassroomAuthenticator, account_passwords
from d2lhub.config import Classroom, load
from d2lhub.spawner import DATA_MOUNT, HOME, ClassroomSpawner, ClassroomSwarmSpawner, ensure_data_volume

CONFIG_ENV = "D2LHUB_CONFIG"
CLI_SERVICE = "d2lhub-cli"
TEMPLATES = Path(__file__).resolve().parent / "templates"


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV, "classroom.yaml"))


def persistent_secret(path: Path) -> str:
    """A random token made once and kept, so restarts keep the proxy and services connected."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(32)
        partial = path.with_suffix(".partial")
        partial.write_text(token)
        os.chmod(partial, 0o600)
        partial.replace(path)
        return token


def cli_token(classroom: Classroom) -> str:
    return persistent_secret(classroom.hub.state_dir / "cli_token")


def course_dir(classroom: Classroom) -> Path:
    return classroom.hub.state_dir / "course"


def hub_api_port(classroom: Classroom) -> int:
    """Where student servers reach the hub (on the bridge's gateway); the public port stays on 127.0.0.1."""
    return classroom.hub.port + 81


def public_url(classroom: Classroom) -> str:
    scheme = "https" if classroom.hub.https else "http"
    return f"{scheme}://{classroom.hub.ip}:{classroom.hub.port}"


def groups(classroom: Classroom) -> dict[str, dict]:
    names = group_names(classroom)
    students = [a.name for a in classroom.auth.accounts if a.role == "student"]
    graders = [a.name for a in classroom.auth.accounts if a.role in {"instructor", "ta"}]
    return {names["students"]: {"users": students}, names["graders"]: {"users": graders}}


def student_network(client, classroom: Classroom):
    """The students' network, the address their servers reach the hub at, and the spawner class."""
    instance = classroom.spawner.instance
    if classroom.spawner.kind == "docker":
        network = bootstrap.ensure_network(client, instance, instance)
        return network, bootstrap.network_gateway(network), ClassroomSpawner
    advertised = bootstrap.swarm_manager_address(client)
    network = bootstrap.ensure_swarm_network(client, instance)
    address = classroom.spawner.hub_address
    if not address:
        loopback = not advertised or ipaddress.ip_address(advertised).is_loopback
        # one node advertised on 127.0.0.1: its containers reach this host at docker0's gateway
        address = bootstrap.network_gateway(client.networks.get("bridge")) if loopback else advertised
    return network, address, ClassroomSwarmSpawner


def use_curl_for_proxy_calls() -> None:
    try:
        from tornado.httpclient import AsyncHTTPClient

        AsyncHTTPClient.configure("tornado.curl_httpclient.CurlAsyncHTTPClient", max_clients=64)
    except ImportError:  # pycurl missing: tornado's simple client still works, only slower
        pass


def firewall_inputs(classroom: Classroom, network_id: str) -> dict:
    """What the packet rules around this hub's students' bridge are made from."""
    return {
        "instance": classroom.spawner.instance,
        "bridge": firewall.bridge_name(network_id),
        "hub_port": hub_api_port(classroom),
        "blocked": tuple(str(n) for n in classroom.spawner.blocked_networks),
        "apart": classroom.spawner.kind == "swarm",
    }


def apply(c, path: Path | None = None) -> Classroom:
    path = (path or config_path()).resolve()
    classroom = load(path)
    state = classroom.hub.state_dir
    state.mkdir(parents=True, exist_ok=True)
    diskspace.check(classroom, "start the hub")  # raises DiskFull: the hub does not start on a full disk
    diskspace.explain_disk_full(state)
    client = bootstrap.docker_client()
    images = {key: bootstrap.student_image(classroom, client, key) for key in bootstrap.images_in_use(classroom)}
    for image in images.values():
        if not bootstrap.has_image(client, image):
            raise bootstrap.BootstrapError(f"student image {image} is not built: run `make images`")
    network, hub_address, spawner_class = student_network(client, classroom)
    if classroom.spawner.firewall:
        firewall.apply(**firewall_inputs(classroom, network.id))
    ensure_data_volume(client, classroom)  # mounted read-only by every server, filled by `course data`
    use_curl_for_proxy_calls()

    hub = classroom.hub
    c.JupyterHub.bind_url = f"{public_url(classroom)}/"
    c.JupyterHub.hub_ip = hub_address
    c.JupyterHub.hub_port = hub_api_port(classroom)
    c.JupyterHub.db_url = hub.db_url or f"sqlite:///{state / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
    c.JupyterHub.cleanup_servers = False
    c.JupyterHub.last_activity_interval = 60
    c.JupyterHub.concurrent_spawn_limit = hub.concurrent_spawn_limit
    c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}
    if hub.https:
        c.JupyterHub.ssl_cert = str(hub.https.cert_file)
        c.JupyterHub.ssl_key = str(hub.https.key_file)

    c.ConfigurableHTTPProxy.command = [shutil.which("configurable-http-proxy") or "configurable-http-proxy"]
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{hub.port + 1}"
    c.ConfigurableHTTPProxy.auth_token = persistent_secret(state / "proxy_token")
    c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")

    c.JupyterHub.template_paths = [str(TEMPLATES)]
    c.JupyterHub.template_vars = {
        "course_name": classroom.course.name,
        "course_term": classroom.course.term,
        "course_welcome": classroom.course.welcome,
        "course_help_url": classroom.course.help_url,
        "state_dir_full_message": diskspace.full_message(state),  # error.html, for a database error on a full disk
    }

    accounts = classroom.auth.accounts
    c.JupyterHub.authenticator_class = ClassroomAuthenticator
    c.ClassroomAuthenticator.seed_passwords = account_passwords(classroom)
    c.ClassroomAuthenticator.roster_hashes_file = str(state / ROSTER_HASHES_FILE)
    c.NativeAuthenticator.open_signup = classroom.auth.open_signup
    c.NativeAuthenticator.minimum_password_length = 8
    c.Authenticator.allow_all = True  # NativeAuthenticator admits only approved accounts
    c.Authenticator.allowed_users = {a.name for a in accounts if a.role != "admin"}
    c.Authenticator.admin_users = {a.name for a in accounts if a.role == "admin"}
    c.JupyterHub.load_groups = groups(classroom)

    services = [{"name": CLI_SERVICE, "api_token": cli_token(classroom)}]
    roles = [
        {
            "name": CLI_SERVICE,
            "scopes": ["admin:users", "admin:servers", "admin:groups", "list:users", "read:users",
                       "access:servers"],  # prestart opens the lecture's kernel in each server
            "services": [CLI_SERVICE],
        }
    ]
    if classroom.culling.enabled:
        services.append(
            {
                "name": "idle-culler",
                "command": [
                    sys.executable,
                    "-m",
                    "jupyterhub_idle_culler",
                    f"--timeout={classroom.culling.timeout}",
                    f"--cull-every={classroom.culling.every}",
                ],
            }
        )
        roles.append(
            {
                "name": "idle-culler",
                "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
                "services": ["idle-culler"],
            }
        )
    if classroom.prestart.schedule:
        services.append(
            {
                "name": "lecture-prestart",
                "command": [sys.executable, "-m", "d2lhub.cli", "prestart", "--on-schedule",
                            "--config", str(path)],
            }
        )
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles

    c.JupyterHub.spawner_class = spawner_class
    c.ClassroomMixin.classroom = classroom
    c.ClassroomMixin.course_dir = str(course_dir(classroom))
    c.ClassroomMixin.images = images
    c.ClassroomMixin.gpu_state_file = str(state / "gpus.json")
    c.DockerSpawner.image = images[classroom.profiles[0].image]
    c.DockerSpawner.allowed_images = sorted(images.values())
    c.DockerSpawner.pull_policy = "never"  # images are built before the class, never pulled mid-spawn
    c.DockerSpawner.cmd = ["d2lhub-start"]
    c.DockerSpawner.prefix = classroom.spawner.instance
    c.DockerSpawner.network_name = network.name
    c.DockerSpawner.use_internal_ip = True
    c.DockerSpawner.remove = True
    c.DockerSpawner.notebook_dir = HOME
    c.DockerSpawner.client_kwargs = {"max_pool_size": classroom.spawner.docker_workers}
    c.Spawner.default_url = "/lab/tree/d2l"
    c.Spawner.start_timeout = hub.start_timeout
    c.Spawner.http_timeout = hub.start_timeout
    c.Spawner.environment = {"D2LHUB_COURSE": classroom.course.id, "MXNET_HOME": f"{DATA_MOUNT}/mxnet"}
    return classroom
