"""What the machine says, gathered once when the hub starts: the I/O half of the hub's configuration.

`gather` checks and prepares what the hub needs (free space, the images built from this
checkout, the students' network and its packet rules, the egress proxy's files, the data
volume, the uid registry seeded from the home volumes, the persistent secrets) and returns it
as `Facts`; `d2lhub.hub.traits.apply` turns classroom.yaml plus those facts into JupyterHub's
traits without touching the machine.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import requests

from d2lhub import diskspace, engine, identity, ltistate, state, studentimage
from d2lhub.authconfig import Secret
from d2lhub.config import Classroom, ConfigError
from d2lhub.grading import layout
from d2lhub.hub import dbfull, egress, firewall, homes


@dataclass(frozen=True)
class Facts:
    """Everything the traits need that classroom.yaml does not say."""

    config_file: Path  # classroom.yaml, for the services the hub starts
    images: dict[str, str]  # image key (student, student_gpu) -> the tag built from this checkout
    network_name: str  # the students' network (a bridge, or a Swarm-scoped one)
    hub_address: str  # where students' servers reach the hub's API
    proxy_command: str  # configurable-http-proxy on this machine
    proxy_token: str  # kept in the state folder, so the proxy outlives a hub restart
    cli_token: str  # the `d2lhub` commands' service token
    passwords: dict[str, str]  # the accounts classroom.yaml lists -> their (kept) passwords
    python: str = sys.executable  # runs the hub's services
    sign_in: dict[str, str] = field(default_factory=dict)  # what auth.kind needs: secrets, the provider's endpoints
    egress_proxy: str = ""  # network.egress: allowlist: the proxy students' servers go through
    egress_command: tuple[str, ...] = ()  # ... and the command that runs it (a managed service)


def read_secret(classroom: Classroom, secret: Secret, key: str) -> str:
    """A secret from its environment variable, else from its file in the state folder, which
    only its owner may read; a ConfigError naming `key` says what to do when there is none."""
    value = os.environ.get(secret.env, "").strip()
    if value:
        return value
    path = secret.file if secret.file.is_absolute() else state.in_state(classroom, str(secret.file))
    try:
        mode = path.stat().st_mode & 0o777
        value = path.read_text().strip()
    except FileNotFoundError:
        raise ConfigError(f"{key}: no secret: set ${secret.env}, or write it to {path} (chmod 600)") from None
    if mode & 0o077:
        raise ConfigError(f"{key}: {path} may be read by others (mode {mode:o}): chmod 600 {path}")
    if not value:
        raise ConfigError(f"{key}: {path} is empty")
    return value


def oidc_endpoints(issuer: str, verify_tls: bool = True) -> dict[str, str]:
    """The provider's endpoints from its discovery document; a ConfigError naming auth.oidc.issuer
    when it does not answer or does not describe this issuer."""
    url = f"{issuer}/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=10, verify=verify_tls)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise ConfigError(f"auth.oidc.issuer: {url} does not answer with a discovery document: {exc}") from None
    if document.get("issuer", "").rstrip("/") != issuer:
        raise ConfigError(f"auth.oidc.issuer: {url} describes issuer {document.get('issuer')!r}, not {issuer!r}")
    wanted = {"authorize_url": "authorization_endpoint", "token_url": "token_endpoint",
              "userdata_url": "userinfo_endpoint", "jwks_url": "jwks_uri"}
    missing = [name for name in wanted.values() if not document.get(name)]
    if missing:
        raise ConfigError(f"auth.oidc.issuer: {url} names no {', '.join(missing)}")
    return {"issuer": document["issuer"], **{trait: document[name] for trait, name in wanted.items()}}


def ldap_answers(server: str, port: int) -> None:
    """A ConfigError naming auth.ldap.server when nothing listens there."""
    try:
        socket.create_connection((server, port), timeout=10).close()
    except OSError as exc:
        raise ConfigError(f"auth.ldap.server: {server}:{port} does not answer: {exc}") from None


def sign_in_facts(classroom: Classroom) -> dict[str, str]:
    """What the sign-in kind needs from outside classroom.yaml, checked now so a mistake stops start-up."""
    auth = classroom.auth
    if auth.oidc is not None:
        found = oidc_endpoints(auth.oidc.issuer, auth.oidc.verify_tls)
        found["client_secret"] = read_secret(classroom, auth.oidc.client_secret, "auth.oidc.client_secret")
        return found
    if auth.ldap is not None:
        ldap = auth.ldap
        ldap_answers(ldap.server, ldap.port or (636 if ldap.tls == "on_connect" else 389))
        if ldap.search is not None and ldap.search.bind_dn:
            return {"bind_password": read_secret(classroom, ldap.search.bind_password,
                                                 "auth.ldap.search.bind_password")}
    return {}


def firewall_inputs(classroom: Classroom, network_id: str) -> dict:
    """What the packet rules around this hub's students' bridge are made from."""
    return {
        "instance": classroom.spawner.instance,
        "bridge": firewall.bridge_name(network_id),
        "hub_port": state.hub_api_port(classroom),
        "blocked": tuple(str(n) for n in classroom.spawner.blocked_networks),
        "apart": classroom.spawner.kind == "swarm",
        "egress": classroom.network.egress,
        "proxy_port": state.egress_proxy_port(classroom),
    }


def find_squid() -> str | None:
    """Debian's squid (in /usr/sbin, which a non-root PATH may lack)."""
    return shutil.which("squid") or shutil.which("squid", path="/usr/sbin:/sbin")


def prepare_egress_proxy(classroom: Classroom, network, listen: str) -> tuple[str, tuple[str, ...]]:
    """Under network.egress: allowlist, write squid's files (d2lhub.hub.egress) and return the proxy's
    URL and the command that runs it; ("", ()) under none and open."""
    if classroom.network.egress != "allowlist":
        return "", ()
    squid = find_squid()
    if squid is None:
        raise engine.EngineError("network.egress: allowlist needs squid, the proxy students go through: "
                                 "`make up` installs it (Debian: apt-get install squid)")
    subnets = [c["Subnet"] for c in network.attrs.get("IPAM", {}).get("Config") or [] if c.get("Subnet")]
    if not subnets:
        raise engine.EngineError(f"network {network.name} has no subnet: cannot tell squid who the students are")
    where, port = egress.folder(classroom), state.egress_proxy_port(classroom)
    for name, text in egress.files(classroom.network, listen, port, " ".join(subnets), where).items():
        (where / name).parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        (where / name).write_text(text)
    for page in egress.SQUID_TEMPLATES.iterdir():  # squid's other error pages, as Debian ships them
        link = where / "errors" / page.name
        link.unlink(missing_ok=True)
        link.symlink_to(page)
    for part in (egress.RUN_ROOT, where.parent, where, where / "errors"):
        part.chmod(0o755)  # squid reads them after dropping root
    return egress.proxy_url(listen, port), tuple(egress.command(squid, where))


def student_network(client, classroom: Classroom):
    """The students' network and the address their servers reach the hub at."""
    instance = classroom.spawner.instance
    if classroom.spawner.kind == "docker":
        network = engine.ensure_network(client, instance, instance)
        return network, engine.network_gateway(network)
    advertised = engine.swarm_manager_address(client)
    network = engine.ensure_swarm_network(client, instance)
    address = classroom.spawner.hub_address
    if not address:
        loopback = not advertised or ipaddress.ip_address(advertised).is_loopback
        # one node advertised on 127.0.0.1: its containers reach this host at docker0's gateway
        address = engine.network_gateway(client.networks.get("bridge")) if loopback else advertised
    return network, address


class PlatformError(Exception):
    """The LMS of `auth.lti13` does not give its keys; names the key to fix."""


def check_lti_platform(classroom: Classroom) -> None:
    """The LMS's key set answers: launches are checked against it, so a wrong URL stops the start."""
    url = classroom.auth.lti13.jwks_url
    try:
        keys = requests.get(url, timeout=10).json()["keys"]
    except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
        raise PlatformError(f"auth.lti13.jwks_url: {url} gives no key set ({exc.__class__.__name__}); "
                            "check the LMS's settings") from None
    if not keys:
        raise PlatformError(f"auth.lti13.jwks_url: {url} lists no keys")


def use_curl_for_proxy_calls() -> None:
    """The hub's many proxy-API calls go through curl (zero-to-jupyterhub's habit)."""
    try:
        from tornado.httpclient import AsyncHTTPClient

        AsyncHTTPClient.configure("tornado.curl_httpclient.CurlAsyncHTTPClient", max_clients=64)
    except ImportError:  # pycurl missing: tornado's simple client still works, only slower
        pass


def gather(classroom: Classroom, config_file: Path) -> Facts:
    """Check and prepare the machine for this classroom's hub; raises with what to do when it cannot."""
    folder = classroom.hub.state_dir
    folder.mkdir(parents=True, exist_ok=True)
    sign_in = sign_in_facts(classroom)  # before anything is made: a missing secret changes nothing
    diskspace.check(classroom, "start the hub")  # raises DiskFull: the hub does not start on a full disk
    dbfull.explain_disk_full(folder)
    if classroom.auth.kind == "lti13":
        check_lti_platform(classroom)
        ltistate.ensure_key(folder)  # the tool's signing key (0600), made on the first start
    client = engine.docker_client()
    images = {key: studentimage.built_image(classroom, client, key) for key in studentimage.images_in_use(classroom)}
    network, hub_address = student_network(client, classroom)
    if classroom.spawner.firewall:
        firewall.apply(**firewall_inputs(classroom, network.id))
    proxy, proxy_command = prepare_egress_proxy(classroom, network, hub_address)
    engine.ensure_data_volume(client, classroom)  # mounted read-only by every server, filled by `course data`
    homes.ensure_filesystem(client, classroom)  # students' homes and the submissions, each with its limit
    layout.migrate_course_folder(classroom)  # a classroom's one course folder from before several courses
    identity.seed(classroom, client)  # uids the home volumes record, for names the registry lacks (a lost state folder)
    use_curl_for_proxy_calls()
    return Facts(
        config_file=config_file,
        images=images,
        network_name=network.name,
        hub_address=hub_address,
        proxy_command=shutil.which("configurable-http-proxy") or "configurable-http-proxy",
        proxy_token=state.proxy_token(classroom),
        cli_token=state.cli_token(classroom),
        passwords=state.account_passwords(classroom) if classroom.auth.kind == "native" else {},
        sign_in=sign_in,
        egress_proxy=proxy,
        egress_command=proxy_command,
    )
