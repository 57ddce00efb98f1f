"""Sign and check the simulator's access tokens (RS256 JWTs, shaped like Entra's).

Claims follow Entra ID access tokens (learn.microsoft.com/entra/identity-platform/access-token-claims-reference):
``aud`` (resource), ``iss``, ``tid``, ``appid``/``azp``, ``roles``, ``iat``/``nbf``/``exp``,
``oid``/``sub``. Outlook tokens additionally carry ``scope`` and ``mailbox_domain`` because
Dovecot's local JWT validation reads only a ``scope`` claim and one username claim
(shared/testing.md, "XOAUTH2 against a real IMAP server").
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailtrek.sim.config import GRAPH_RESOURCE, IMAP_ROLE, OUTLOOK_RESOURCE, SimConfig


class TokenRejected(Exception):
    """The bearer token is missing, malformed, forged, for another audience or expired."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class IssuedToken:
    """One issued access token and its lifetime."""

    access_token: str
    expires_in: int


class TokenIssuer:
    """Hold the signing key; issue tokens and validate bearer tokens.

    ``expire_all()`` makes every token issued so far fail as expired (early expiry).
    """

    def __init__(self, config: SimConfig) -> None:
        self._config = config
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "mailtrek-sim-" + uuid.uuid4().hex[:12]
        self._issued: set[str] = set()
        self._expired: set[str] = set()
        self._verified: dict[tuple[str, str], dict[str, Any]] = {}

    @property
    def public_key_pem(self) -> str:
        """Return the RS256 public key in PEM (SubjectPublicKeyInfo)."""
        return (
            self._key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def jwks(self) -> dict[str, Any]:
        """Return the JSON Web Key Set advertising the signing key."""
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return {"keys": [jwk]}

    def issuer(self, tid: str) -> str:
        """Return the ``iss`` written into tokens of tenant ``tid``."""
        return f"{self._config.issuer_base}/{tid}/"

    def issue(self, tid: str, client_id: str, resource: str) -> IssuedToken:
        """Sign an app-only token for ``resource`` (GRAPH_RESOURCE or OUTLOOK_RESOURCE)."""
        now = int(time.time())
        lifetime = self._config.token_lifetime_s
        claims: dict[str, Any] = {
            "aud": resource,
            "iss": self.issuer(tid),
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "tid": tid,
            "appid": client_id,
            "azp": client_id,
            "appidacr": "1",
            "idtyp": "app",
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{tid}:{client_id}")),
            "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{tid}:{client_id}")),
            "ver": "1.0",
            "jti": uuid.uuid4().hex,
        }
        if resource == OUTLOOK_RESOURCE:
            claims["roles"] = [IMAP_ROLE]
            claims["scope"] = IMAP_ROLE
            domain = self._config.imap_mailbox_domain or next(iter(self._config.domains), None)
            if domain:
                claims["mailbox_domain"] = f"*@{domain}"
        else:
            claims["roles"] = list(self._config.graph_roles)
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})
        self._issued.add(claims["jti"])
        return IssuedToken(token, lifetime)

    def validate(self, token: str, resource: str = GRAPH_RESOURCE) -> dict[str, Any]:
        """Return the claims of a valid bearer token for ``resource``.

        Raises TokenRejected with a reason suitable for the error message (no token text).
        """
        cached = self._verified.get((token, resource))
        if cached is not None:
            # Signature and audience were checked when first seen; time and revocation
            # change, so they are checked on every use (an RSA verify per request was a
            # tenth of the simulator's CPU).
            if cached["exp"] <= time.time():
                raise TokenRejected("Lifetime validation failed, the token is expired.")
            if cached.get("jti") in self._expired:
                raise TokenRejected("Lifetime validation failed, the token is expired.")
            return cached
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenRejected("IDX14100: JWT is not well formed.") from exc
        if header.get("kid") != self.kid:
            raise TokenRejected("Signing key not found.")
        try:
            claims = jwt.decode(
                token, self._key.public_key(), algorithms=["RS256"], audience=resource,
                options={"require": ["exp", "iat", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenRejected("Lifetime validation failed, the token is expired.") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenRejected("Invalid audience.") from exc
        except jwt.PyJWTError as exc:
            raise TokenRejected("Signature validation failed.") from exc
        if claims.get("jti") in self._expired:
            raise TokenRejected("Lifetime validation failed, the token is expired.")
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[(token, resource)] = claims
        return claims

    def expire_all(self) -> int:
        """Make every token issued so far invalid as expired; return how many."""
        self._expired |= self._issued
        return len(self._issued)
