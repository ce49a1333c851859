"""Real identity servers for the sign-in tests, started on 127.0.0.1 by the tests themselves:
node-oidc-provider (npm, pinned in tests/integration/oidc/package-lock.json) and Debian's slapd.
Whatever is missing (node, npm, the npm package, slapd) is installed here, or the test fails."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

from d2lhub.ops.bootstrap import apt_install

OIDC_DIR = Path(__file__).resolve().parent / "oidc"
SUFFIX = "dc=d2l,dc=test"
LDAP_SCHEMAS = ("core", "cosine", "inetorgperson", "nis")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, log: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {seconds}s:\n{log.read_text()[-3000:]}")


def stopped(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def ensure_oidc_provider() -> None:
    """node and npm from Debian when missing; the pinned oidc-provider into tests/integration/oidc/."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        apt_install("nodejs", "npm")
    if not (OIDC_DIR / "node_modules" / "oidc-provider" / "package.json").is_file():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=OIDC_DIR, check=True, capture_output=True)


@contextmanager
def oidc_provider(folder: Path, redirect_uri: str, client_secret: str, users: dict, code_ttl: int = 10):
    """The provider, listening; yields its issuer URL. `users`: name -> {password, groups}."""
    ensure_oidc_provider()
    port = free_port()
    settings = {"port": port, "client_id": "d2lhub", "client_secret": client_secret,
                "redirect_uris": [redirect_uri], "code_ttl": code_ttl, "users": users}
    log = folder / "oidc-provider.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(["node", str(OIDC_DIR / "provider.mjs")], cwd=OIDC_DIR, stdout=out,
                                   stderr=subprocess.STDOUT, env={**os.environ, "OIDC_TEST_SETTINGS": json.dumps(settings)})
    try:
        wait_for_port(port, process, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stopped(process)


def directory_ldif(people: dict[str, str], groups: dict[str, list[str]]) -> str:
    """The test directory: people (uid -> password) and groupOfNames groups (cn -> uids)."""
    entries = [f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: D2L test\ndc: d2l",
               f"dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people",
               f"dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups"]
    for uid, password in people.items():
        entries.append(f"dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\n"
                       f"sn: {uid}\nuserPassword: {password}")
    for cn, members in groups.items():
        lines = [f"dn: cn={cn},ou=groups,{SUFFIX}", "objectClass: groupOfNames", f"cn: {cn}"]
        lines += [f"member: uid={uid},ou=people,{SUFFIX}" for uid in members]
        entries.append("\n".join(lines))
    return "\n\n".join(entries) + "\n"


@contextmanager
def slapd(folder: Path, people: dict[str, str], groups: dict[str, list[str]], search_password: str):
    """Debian's slapd with the test directory, on a loopback port; yields the port.
    `cn=hub,dc=d2l,dc=test` (password `search_password`) may search it; people bind as themselves."""
    if shutil.which("slapd") is None or not Path("/usr/sbin/slapadd").exists():
        apt_install("slapd")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "db").mkdir(exist_ok=True)
    conf = folder / "slapd.conf"
    conf.write_text("\n".join([*(f"include /etc/ldap/schema/{name}.schema" for name in LDAP_SCHEMAS),
        "modulepath /usr/lib/ldap", "moduleload back_mdb", f"pidfile {folder}/slapd.pid",
        "database mdb", f'suffix "{SUFFIX}"', f'rootdn "cn=admin,{SUFFIX}"', f"rootpw {search_password}-root",
        f"directory {folder}/db",
        "access to attrs=userPassword by anonymous auth by self read by * none",
        "access to * by users read by * none", ""]))
    hub_account = f"dn: cn=hub,{SUFFIX}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n" \
                  f"cn: hub\nuserPassword: {search_password}\n"
    (folder / "data.ldif").write_text(directory_ldif(people, groups) + "\n" + hub_account)
    subprocess.run(["/usr/sbin/slapadd", "-f", str(conf), "-l", str(folder / "data.ldif")], check=True, capture_output=True)
    port = free_port()
    log = folder / "slapd.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(["slapd", "-d", "0", "-f", str(conf), "-h", f"ldap://127.0.0.1:{port}/"],
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process, log)
        yield port
    finally:
        stopped(process)
