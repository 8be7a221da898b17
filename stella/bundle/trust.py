"""Whom a verifier trusts: one public key (``--key``) or a trust-root file (``--trust-root``).

Trust never comes from the bundle. A bundle carries its signer's public key
(``signatures/signer.pub``) only so a report can say which key signed; acceptance comes
from the keys the receiving side pinned out of band (sigstore's rule for self-managed
keys, research §2.2: the embedded key is an unauthenticated hint).

The trust-root file (``docs/trust-root.md``) is JSON::

    {
      "schema": "https://stellaops.io/export-center/trust-root/v1",
      "keys": [
        {"publicKey": "-----BEGIN PUBLIC KEY-----\\n…", "keyId": "sha256:…",   # keyId optional, checked
         "tenants": ["acme"], "profiles": ["json:raw", "trivy:db"],          # optional: absent = any
         "comment": "export signer 2026"}
      ],
      "minimumGeneratedAt": "2026-01-01T00:00:00Z",                           # optional rollback floor
      "lastSeen": [{"tenant": "acme", "profile": "json:raw",                  # optional, kept by --record
                    "generatedAt": "2026-11-27T00:00:00Z", "exportId": "acme-json-raw-…"}]
    }

Rollback protection follows TUF's rule (research §1.2): never accept a bundle older
than what this side already trusted. ``generatedAt`` is the data's high-water mark
(signed inside ``export.json``), so an older bundle of the same tenant and profile --
validly signed, but stale -- is refused; an equal one (a rerun) is accepted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from stella.bundle.paths import MANIFEST_ENVELOPE
from stella.errors import UsageError
from stella.guards import strictjson
from stella.guards.files import open_regular, path_error
from stella.signers.interface import PublicKeyVerifier, load_verifier
from stella.storage import atomic_local

__all__ = [
    "TRUST_ROOT_SCHEMA",
    "PolicyViolation",
    "TrustPolicy",
    "TrustedKey",
    "build_trust_root",
    "load_trust_root",
    "record_seen",
    "trust_key",
]

TRUST_ROOT_SCHEMA: Final = "https://stellaops.io/export-center/trust-root/v1"
# A trust root is a small hand-edited file; anything bigger is not one.
_MAX_TRUST_ROOT_BYTES: Final = 1 << 20
_TOP_FIELDS: Final = frozenset({"schema", "keys", "minimumGeneratedAt", "lastSeen", "comment"})
_KEY_FIELDS: Final = frozenset({"publicKey", "keyId", "tenants", "profiles", "comment"})


@dataclass(frozen=True)
class TrustedKey:
    """A pinned public key and what it may sign for (``None`` = any tenant / profile)."""

    verifier: PublicKeyVerifier
    tenants: frozenset[str] | None = None
    profiles: frozenset[str] | None = None

    def allows(self, tenant: str, profile: str) -> bool:
        return (self.tenants is None or tenant in self.tenants) and (
            self.profiles is None or profile in self.profiles
        )


@dataclass(frozen=True)
class PolicyViolation:
    """A policy failure: the signature is valid and trusted, the bundle is still refused."""

    file: str
    reason: str


@dataclass(frozen=True)
class TrustPolicy:
    """What a verifier accepts. Built by :func:`trust_key` or :func:`load_trust_root`."""

    source: str
    keys: tuple[TrustedKey, ...]
    minimum_generated_at: str | None = None
    last_seen: Mapping[tuple[str, str], Mapping[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Sigstore's rule (aesthetics practice 10): an empty key set must never pass.
        if not self.keys:
            raise UsageError(f"{self.source}: no trusted keys; an empty trust root verifies nothing")

    @property
    def verifiers(self) -> tuple[PublicKeyVerifier, ...]:
        return tuple(k.verifier for k in self.keys)

    def key(self, key_id: str) -> TrustedKey | None:
        return next((k for k in self.keys if k.verifier.key_id == key_id), None)

    def check(self, manifest: Mapping[str, Any], key_id: str) -> list[PolicyViolation]:
        """Key scope and rollback, in that order; an empty list means the bundle is accepted."""
        tenant = str(manifest.get("tenant"))
        profile = str(manifest.get("profile", {}).get("name"))
        generated = str(manifest.get("generatedAt"))
        violations: list[PolicyViolation] = []
        trusted = self.key(key_id)
        if trusted is not None and not trusted.allows(tenant, profile):
            violations.append(
                PolicyViolation(
                    MANIFEST_ENVELOPE,
                    f"key {key_id} is trusted by {self.source} but not for tenant {tenant!r} / profile {profile!r}",
                )
            )
        floors = [("minimumGeneratedAt", self.minimum_generated_at)]
        seen = self.last_seen.get((tenant, profile))
        if seen is not None:
            floors.append((f"lastSeen {seen.get('exportId', '')}".strip(), seen.get("generatedAt")))
        for label, floor in floors:
            if floor is not None and _instant(generated, "export.json generatedAt") < _instant(floor, label):
                violations.append(
                    PolicyViolation(
                        "export.json",
                        f"rollback: generatedAt {generated} is older than {label} {floor} in {self.source}",
                    )
                )
        return violations


def _instant(text: str, what: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(f"{what} {text!r} is not an RFC 3339 time") from exc


def trust_key(path: Path) -> TrustPolicy:
    """``--key PUB``: exactly one trusted key, for any tenant and profile, no rollback floor."""
    return TrustPolicy(source=f"--key {path}", keys=(TrustedKey(load_verifier(_read(path, "public key"))),))


def _read(path: Path, what: str) -> bytes:
    try:
        with open_regular(path, what, error=UsageError, follow_links=True) as handle:
            data = handle.read(_MAX_TRUST_ROOT_BYTES + 1)
    except OSError as exc:
        raise path_error(path, what) from exc
    if len(data) > _MAX_TRUST_ROOT_BYTES:
        raise UsageError(f"{what} {path} is larger than {_MAX_TRUST_ROOT_BYTES} bytes")
    return data


def _names(value: Any, where: str) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise UsageError(f"{where} must be a non-empty list of strings (omit it to allow any)")
    return frozenset(value)


def _unknown(value: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    # A misspelt constraint ("tenant" for "tenants") would silently widen trust: refuse it.
    extra = sorted(set(value) - allowed)
    if extra:
        raise UsageError(f"{where}: unknown field(s) {', '.join(extra)}; known: {', '.join(sorted(allowed))}")


def load_trust_root(path: Path) -> TrustPolicy:
    """Parse and check a trust-root file (format in the module docstring and docs/trust-root.md).

    Raises:
        NotFoundError: the file does not exist.
        UsageError: not JSON, wrong schema, unknown fields, no keys, a key that is not
            P-256/Ed25519, a ``keyId`` that does not match its key, or a bad time.
    """
    source = f"trust root {path}"
    root = strictjson.loads(_read(path, "trust root"), what=source, error=UsageError)
    if not isinstance(root, dict) or root.get("schema") != TRUST_ROOT_SCHEMA:
        raise UsageError(f"{source} does not declare schema {TRUST_ROOT_SCHEMA}")
    _unknown(root, _TOP_FIELDS, source)
    entries = root.get("keys")
    if not isinstance(entries, list):
        raise UsageError(f"{source}: keys must be a list")
    keys = []
    for index, entry in enumerate(entries):
        where = f"{source} keys[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("publicKey"), str):
            raise UsageError(f"{where} needs a publicKey (PEM text)")
        _unknown(entry, _KEY_FIELDS, where)
        verifier = load_verifier(entry["publicKey"].encode("ascii"))
        if "keyId" in entry and entry["keyId"] != verifier.key_id:
            raise UsageError(
                f"{where}: keyId {entry['keyId']} does not match its publicKey ({verifier.key_id})"
            )
        keys.append(
            TrustedKey(
                verifier,
                tenants=_names(entry.get("tenants"), f"{where}.tenants"),
                profiles=_names(entry.get("profiles"), f"{where}.profiles"),
            )
        )
    minimum = root.get("minimumGeneratedAt")
    if minimum is not None:
        _instant(str(minimum), f"{source} minimumGeneratedAt")
    last_seen: dict[tuple[str, str], Mapping[str, str]] = {}
    for index, seen in enumerate(root.get("lastSeen", [])):
        try:
            key = (str(seen["tenant"]), str(seen["profile"]))
            _instant(str(seen["generatedAt"]), f"{source} lastSeen[{index}].generatedAt")
        except (KeyError, TypeError) as exc:
            raise UsageError(f"{source} lastSeen[{index}] needs tenant, profile and generatedAt") from exc
        last_seen[key] = {k: str(v) for k, v in seen.items()}
    return TrustPolicy(
        source=source,
        keys=tuple(keys),
        minimum_generated_at=None if minimum is None else str(minimum),
        last_seen=last_seen,
    )


def build_trust_root(
    public_keys: Sequence[bytes],
    *,
    tenants: Sequence[str] = (),
    profiles: Sequence[str] = (),
    minimum_generated_at: str | None = None,
) -> bytes:
    """A trust-root file's bytes for ``stella keys trust-root`` (validated by loading it back)."""
    keys = []
    for pem in public_keys:
        verifier = load_verifier(pem)
        entry: dict[str, Any] = {"keyId": verifier.key_id, "publicKey": verifier.public_key_pem().decode()}
        if tenants:
            entry["tenants"] = sorted(set(tenants))
        if profiles:
            entry["profiles"] = sorted(set(profiles))
        keys.append(entry)
    root: dict[str, Any] = {"schema": TRUST_ROOT_SCHEMA, "keys": keys}
    if minimum_generated_at is not None:
        _instant(minimum_generated_at, "--minimum-generated-at")
        root["minimumGeneratedAt"] = minimum_generated_at
    return json.dumps(root, indent=2, sort_keys=True).encode() + b"\n"


def record_seen(path: Path, manifest: Mapping[str, Any]) -> bool:
    """Raise the trust root's ``lastSeen`` for this tenant and profile to the bundle's generatedAt.

    Called only after a bundle verified and passed policy. The file is rewritten through a
    temp file and a rename, so a crash leaves the old trust root, never half of a new one.
    Returns whether the file changed.
    """
    root = strictjson.loads(_read(path, "trust root"), what=f"trust root {path}", error=UsageError)
    tenant, profile = str(manifest["tenant"]), str(manifest["profile"]["name"])
    entry = {
        "tenant": tenant,
        "profile": profile,
        "generatedAt": str(manifest["generatedAt"]),
        "exportId": str(manifest["exportId"]),
    }
    others = [s for s in root.get("lastSeen", []) if (s.get("tenant"), s.get("profile")) != (tenant, profile)]
    current = next((s for s in root.get("lastSeen", []) if s not in others), None)
    if current is not None and _instant(str(current["generatedAt"]), "lastSeen") >= _instant(
        entry["generatedAt"], "generatedAt"
    ):
        return False
    root["lastSeen"] = sorted([*others, entry], key=lambda s: (s["tenant"], s["profile"]))
    data = json.dumps(root, indent=2, sort_keys=True).encode() + b"\n"
    with atomic_local(path) as out:
        out.write(data)
    return True
