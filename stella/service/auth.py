"""Bearer tokens, scopes and tenants: who may do what, for which tenant.

The embedded default signs its own tokens (Ed25519, kept under ``$STELLA_HOME``) and
``stella auth token`` issues them; an OIDC issuer's JWKS URL can be configured
instead. Tokens carry ``scope`` (space separated, OAuth style) and ``tenants`` (or a
single ``tenant``); ``X-Stella-Tenant`` picks one when a token carries several.

Every failure is one of two errors: no usable identity (401, any reason -- expired,
forged, malformed -- reads the same to the caller) or a known identity lacking a scope
or tenant (403). Resources of other tenants are answered 404 by the routes, because the
store never returns them.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from stella.errors import ForbiddenError, UnauthenticatedError, UsageError
from stella.model import validate_tenant

__all__ = [
    "AUDIENCE",
    "ISSUER",
    "SCOPES",
    "Authenticator",
    "LocalKeys",
    "Principal",
    "issue_token",
    "parse_ttl",
]

SCOPES: tuple[str, ...] = (
    "export:read",
    "export:run",
    "export:download",
    "export:profile:manage",
    "export:trigger",
)
ISSUER = "stella-export-center"
AUDIENCE = "stella-export"
_LEEWAY = 5.0


@dataclass(frozen=True)
class Principal:
    """An authenticated caller acting for one tenant."""

    subject: str
    tenant: str
    tenants: tuple[str, ...]
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise ForbiddenError(
                f"this token lacks the scope {scope}",
                details={"required": scope, "granted": sorted(self.scopes)},
            )


@dataclass(frozen=True)
class LocalKeys:
    """The embedded issuer's Ed25519 key pair, made once and kept (0600) under the service home."""

    private: Ed25519PrivateKey

    @classmethod
    def load_or_create(cls, path: Path) -> LocalKeys:
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise UsageError(f"{path} is not an Ed25519 private key", details={"path": str(path)})
            return cls(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        try:
            os.link(temp, path)  # first writer wins when several processes start at once
        except FileExistsError:
            return cls.load_or_create(path)
        finally:
            temp.unlink()
        return cls(key)

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()


def parse_ttl(text: str) -> int:
    """``90s``, ``15m``, ``8h``, ``7d`` or plain seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        seconds = int(value) * units[unit]
    except ValueError as exc:
        raise UsageError(f"--ttl {text!r}: expected e.g. 3600, 15m, 8h or 7d") from exc
    if seconds <= 0:
        raise UsageError("--ttl must be positive")
    return seconds


def issue_token(
    keys: LocalKeys,
    *,
    tenants: Sequence[str],
    scopes: Sequence[str],
    subject: str,
    ttl_seconds: int,
    now: float | None = None,
) -> str:
    """A signed token for the embedded issuer (``stella auth token``)."""
    if not tenants:
        raise UsageError("a token needs at least one --tenant")
    for tenant in tenants:
        validate_tenant(tenant)
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise UsageError(
            f"unknown scope(s) {', '.join(unknown)}; scopes: {', '.join(SCOPES)}",
            details={"unknown": unknown},
        )
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl_seconds,
        "jti": uuid.uuid4().hex,
        "tenants": list(tenants),
        "scope": " ".join(sorted(set(scopes))),
    }
    return jwt.encode(claims, keys.private, algorithm="EdDSA")


class Authenticator:
    """Verifies bearer tokens, with the embedded key or an OIDC issuer's JWKS."""

    def __init__(
        self,
        *,
        keys: LocalKeys | None = None,
        jwks_url: str | None = None,
        issuer: str = ISSUER,
        audience: str = AUDIENCE,
    ) -> None:
        if (keys is None) == (jwks_url is None):
            raise UsageError("configure exactly one token verifier: the embedded key or a JWKS URL")
        self._keys = keys
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True) if jwks_url else None
        self._issuer = issuer
        self._audience = audience

    @property
    def needs_io(self) -> bool:
        """True when verifying may fetch keys (JWKS): callers then verify off the event loop."""
        return self._jwks is not None

    def _claims(self, token: str) -> Mapping[str, Any]:
        try:
            if self._jwks is not None:
                signing = self._jwks.get_signing_key_from_jwt(token)
                key: Any = signing.key
                algorithms = ["RS256", "ES256", "EdDSA"]
            else:
                assert self._keys is not None
                key, algorithms = self._keys.public, ["EdDSA"]
            claims: Mapping[str, Any] = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=_LEEWAY,
                options={"require": ["exp", "iat", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise UnauthenticatedError("the bearer token has expired", details={"reason": "expired"}) from exc
        except (jwt.PyJWTError, ValueError) as exc:
            raise UnauthenticatedError(
                "the bearer token is not valid", details={"reason": type(exc).__name__}
            ) from exc
        return claims

    def authenticate(self, authorization: str | None, tenant_header: str | None) -> Principal:
        """Resolve ``Authorization: Bearer …`` and ``X-Stella-Tenant`` to a principal."""
        if not authorization:
            raise UnauthenticatedError("missing bearer token (Authorization: Bearer …)")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise UnauthenticatedError("the Authorization header must be 'Bearer <token>'")
        claims = self._claims(token.strip())
        raw_tenants = claims.get("tenants", [claims["tenant"]] if "tenant" in claims else [])
        if not isinstance(raw_tenants, list) or not all(isinstance(t, str) for t in raw_tenants):
            raise UnauthenticatedError("the token's tenants claim is malformed")
        tenants = tuple(raw_tenants)
        if not tenants:
            raise ForbiddenError("the token names no tenant")
        if tenant_header:
            if tenant_header not in tenants:
                raise ForbiddenError(
                    "X-Stella-Tenant names a tenant this token is not for",
                    details={"tenant": tenant_header[:64]},
                )
            tenant = tenant_header
        elif len(tenants) == 1:
            tenant = tenants[0]
        else:
            raise ForbiddenError(
                "this token carries several tenants: choose one with X-Stella-Tenant",
                details={"tenants": list(tenants)},
            )
        scope = claims.get("scope", "")
        scopes = frozenset(scope.split()) if isinstance(scope, str) else frozenset()
        return Principal(str(claims["sub"]), validate_tenant(tenant), tenants, scopes)
