"""What an LTI 1.3 classroom keeps in its state folder (`hub.state_dir/lti13/`), shared by the hub,
`roster sync` and `grades push`:

- `keys/<kid>.pem`: the tool's private keys (RSA, 0600). The newest signs the tool's service requests;
  the one before it stays published in the tool's JWKS after a rotation, so requests signed a moment
  ago still verify. Users do not depend on the key: they are named by the LMS, so rotating loses nobody.
- `users.json`: hub name -> the LMS's user id (`sub`), written at each launch and sync; `grades push`
  needs it to name a student to the LMS.
- `disabled.json`: students `roster sync` dropped: refused at launch, files and grades kept.
- `services.json`: the memberships and line-items URLs the latest launch carried.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from d2lhub.config import Classroom
from d2lhub.state import public_url, write_private

FOLDER = "lti13"
KEPT_KEYS = 2  # the signing key and the one it replaced


def tool_urls(classroom: Classroom) -> dict[str, str]:
    """What an LMS asks for when the tool is registered, by the names Canvas and Moodle give them."""
    hub = f"{public_url(classroom)}/hub"
    return {"OpenID Connect login (initiation) URL": f"{hub}/lti13/oauth_login",
            "Redirect URI (launch URL)": f"{hub}/lti13/oauth_callback",
            "Public JWK set URL (keyset URL)": f"{hub}/lti13/jwks",
            "Target link URI (tool URL)": f"{hub}/"}


def folder(state_dir: Path) -> Path:
    return Path(state_dir) / FOLDER


def key_files(state_dir: Path) -> list[Path]:
    """The tool's private keys, oldest first (their names begin with a running number)."""
    return sorted((folder(state_dir) / "keys").glob("*.pem"))


def new_key(state_dir: Path) -> Path:
    """A fresh RSA key, written 0600; keys older than the one it replaces are removed."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    files = key_files(state_dir)
    number = int(files[-1].stem.split("-")[0]) + 1 if files else 1
    path = folder(state_dir) / "keys" / f"{number:06d}-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}.pem"
    write_private(path, pem.decode())
    for old in key_files(state_dir)[:-KEPT_KEYS]:
        old.unlink()
    return path


def ensure_key(state_dir: Path) -> Path:
    """The signing key, made on first use."""
    files = key_files(state_dir)
    return files[-1] if files else new_key(state_dir)


def signing_key(state_dir: Path) -> tuple[str, str]:
    """(kid, private key PEM) of the key that signs the tool's requests."""
    path = ensure_key(state_dir)
    return path.stem, path.read_text()


def jwks(state_dir: Path) -> dict:
    """The public halves of the kept keys, as the platform fetches them."""
    keys = []
    for path in key_files(state_dir):
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
        keys.append({**jwk, "kid": path.stem, "alg": "RS256", "use": "sig"})
    return {"keys": keys}


def read(state_dir: Path, name: str, empty):
    try:
        return json.loads((folder(state_dir) / name).read_text())
    except FileNotFoundError:
        return empty


def write(state_dir: Path, name: str, value) -> None:
    write_private(folder(state_dir) / name, json.dumps(value, indent=1, sort_keys=True))


def users(state_dir: Path) -> dict[str, str]:
    return read(state_dir, "users.json", {})


def disabled(state_dir: Path) -> list[str]:
    return read(state_dir, "disabled.json", [])


def services(state_dir: Path) -> dict[str, str]:
    return read(state_dir, "services.json", {})
