"""ID tokens checked against the issuer's keys: real RSA keys, real signatures (PyJWT, cryptography)."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from d2lhub.hub.authjwt import TokenRefused, verify

ISSUER = "http://127.0.0.1:9999"


def new_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


PROVIDER_KEY = new_key()
ATTACKER_KEY = new_key()


def jwks_of(key, kid: str = "k1") -> dict:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {"keys": [{**public, "kid": kid, "use": "sig", "alg": "RS256"}]}


def token(key=PROVIDER_KEY, kid: str = "k1", algorithm: str = "RS256", **changes) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": "d2lhub", "sub": "ann", "iat": now, "exp": now + 300,
              "preferred_username": "ann", "groups": ["cs101"], **changes}
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})


def test_a_token_the_provider_signed_passes():
    claims = verify(token(), jwks_of(PROVIDER_KEY), "d2lhub", ISSUER)
    assert (claims["preferred_username"], claims["groups"]) == ("ann", ["cs101"])


@pytest.mark.parametrize("made, reason", [
    (lambda: token(exp=int(time.time()) - 120), "expired"),
    (lambda: token(key=ATTACKER_KEY), "Signature verification failed"),
    (lambda: token(key=ATTACKER_KEY, kid="k2"), "which the issuer does not publish"),
    (lambda: token(aud="another-app"), "Audience"),
    (lambda: token(iss="http://evil.example"), "issuer"),
    (lambda: jwt.encode({"iss": ISSUER, "aud": "d2lhub", "sub": "ann", "exp": int(time.time()) + 60}, None,
                        algorithm="none"), "signed with 'none'"),
    (lambda: "not-a-token", "not a signed token"),
])
def test_forged_expired_or_misdirected_tokens_are_refused(made, reason):
    with pytest.raises(TokenRefused, match=reason):
        verify(made(), jwks_of(PROVIDER_KEY), "d2lhub", ISSUER)


def test_hmac_signed_with_the_public_key_is_refused():
    """Algorithm confusion: HS256 keyed with the provider's public key must not pass."""
    public_pem = PROVIDER_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    header = jwt.utils.base64url_encode(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode())
    body = jwt.utils.base64url_encode(json.dumps({"iss": ISSUER, "aud": "d2lhub", "sub": "ann",
                                                  "iat": int(time.time()), "exp": int(time.time()) + 60}).encode())
    import hashlib
    import hmac

    signature = jwt.utils.base64url_encode(hmac.new(public_pem, header + b"." + body, hashlib.sha256).digest())
    forged = (header + b"." + body + b"." + signature).decode()
    with pytest.raises(TokenRefused, match="signed with 'HS256'"):
        verify(forged, jwks_of(PROVIDER_KEY), "d2lhub", ISSUER)
