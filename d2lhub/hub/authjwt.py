"""Checking a signed token (an OIDC ID token; an LTI launch uses the same checks) against the
issuer's published keys: signature, issuer, audience, expiry. Pure: the caller fetches the keys.

Only asymmetric algorithms are accepted, so neither `none` nor an HMAC signed with the public
key (algorithm confusion) passes.
"""

from __future__ import annotations

import jwt

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


class TokenRefused(Exception):
    """The token failed a check; the message says which."""


def verify(token: str, jwks: dict, audience: str, issuer: str, leeway: int = 30) -> dict:
    """The token's claims, once its signature (by a key of `jwks`, by its `kid`), issuer, audience
    and expiry check out; else TokenRefused."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise TokenRefused(f"not a signed token: {exc}") from None
    algorithm = header.get("alg")
    if algorithm not in ALGORITHMS:
        raise TokenRefused(f"signed with {algorithm!r}, not one of {', '.join(ALGORITHMS)}")
    try:
        keys = jwt.PyJWKSet.from_dict(jwks).keys
    except jwt.PyJWTError as exc:
        raise TokenRefused(f"the issuer's key set is unusable: {exc}") from None
    kid = header.get("kid")
    if kid:
        key = next((k for k in keys if k.key_id == kid), None)
    else:  # no key id: only an issuer with a single key can be meant
        key = keys[0] if len(keys) == 1 else None
    if key is None:
        raise TokenRefused(f"signed by key {kid!r}, which the issuer does not publish")
    try:
        return jwt.decode(token, key.key, algorithms=[algorithm], audience=audience, issuer=issuer, leeway=leeway,
                          options={"require": ["exp", "iat", "iss", "aud", "sub"]})
    except jwt.ExpiredSignatureError:
        raise TokenRefused("expired") from None
    except jwt.InvalidTokenError as exc:
        raise TokenRefused(str(exc)) from None
