"""Request bodies and query parameters: untrusted JSON to typed objects, at the edge.

Every field is checked for type and shape here, and a problem names the field; what
the bodies mean (profiles, selectors, options) is then checked by the same library
functions the CLI uses (:func:`stella.bundle.request.new_request`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stella.errors import UsageError
from stella.guards import strictjson
from stella.guards.ids import check_id

__all__ = [
    "MAX_BODY_BYTES",
    "RUN_ID",
    "ProfileBody",
    "RunBody",
    "check_idempotency_key",
    "check_profile_name",
    "check_run_id",
    "parse_json",
]

MAX_BODY_BYTES = 256 * 1024
RUN_ID = re.compile(r"run-[0-9a-f]{32}")
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def parse_json(raw: bytes) -> dict[str, Any]:
    """A JSON object body, bounded, without duplicate keys or NaN/Infinity."""
    value = strictjson.loads(raw or b"{}", what="request body", error=UsageError, max_bytes=MAX_BODY_BYTES)
    if not isinstance(value, dict):
        raise UsageError("request body must be a JSON object")
    return value


def check_run_id(value: str) -> str:
    if not RUN_ID.fullmatch(check_id(value, "run id")):
        raise UsageError("malformed run id: expected run-<32 hex digits>", details={"runId": value[:80]})
    return value


def check_profile_name(value: str, what: str = "profile name") -> str:
    return check_id(value, what)


def check_idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(value):
        raise UsageError("Idempotency-Key: 1-128 of A-Z, a-z, 0-9, '.', '_', ':', '-'")
    return value


def _strings(body: Mapping[str, Any], key: str, limit: int = 64) -> list[str]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and 0 < len(v) <= 4096 for v in value):
        raise UsageError(f"{key} must be a list of non-empty strings", details={"field": key})
    if len(value) > limit:
        raise UsageError(f"{key} holds more than {limit} entries", details={"field": key})
    return list(value)


def _options(body: Mapping[str, Any]) -> dict[str, str]:
    value = body.get("options", {})
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and len(v) <= 256 for k, v in value.items()
    ):
        raise UsageError("options must be an object of string values", details={"field": "options"})
    if "base" in value:
        # Locally a delta's base may be a path; through the API it is one of the tenant's
        # published export ids, looked up in the tenant's bundle folder, never a server path.
        check_id(value["base"], "options.base (an export id)")
    return dict(value)


def _recipients(body: Mapping[str, Any]) -> list[str]:
    recipients = _strings(body, "encryptTo", limit=16)
    for recipient in recipients:
        if not recipient.startswith("age1"):
            # RSA files and PKCS#11 URIs would make the server read its own files or tokens.
            raise UsageError(
                "encryptTo takes age X25519 recipients (age1…) through the API",
                details={"field": "encryptTo"},
            )
    return recipients


def _flag(body: Mapping[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise UsageError(f"{key} must be true or false", details={"field": key})
    return value


def _unknown(body: Mapping[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise UsageError(
            f"unknown field(s) {', '.join(extra)}; allowed: {', '.join(sorted(allowed))}",
            details={"fields": extra},
        )


@dataclass(frozen=True)
class ProfileBody:
    """A stored profile: a built-in profile plus selectors, options, signing, encryption and targets."""

    profile: str
    selectors: list[str] = field(default_factory=list)
    options: dict[str, str] = field(default_factory=dict)
    encrypt_to: list[str] = field(default_factory=list)
    sign: bool = False
    description: str = ""
    targets: list[str] = field(default_factory=list)

    _FIELDS = frozenset(
        {"name", "profile", "selectors", "options", "encryptTo", "sign", "description", "targets"}
    )

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ProfileBody:
        _unknown(body, set(cls._FIELDS))
        profile = body.get("profile")
        if not isinstance(profile, str):
            raise UsageError(
                "profile (the built-in profile, e.g. json:raw) is required", details={"field": "profile"}
            )
        description = body.get("description", "")
        if not isinstance(description, str) or len(description) > 1000:
            raise UsageError("description must be a string of at most 1000 characters")
        return cls(
            profile,
            _strings(body, "selectors"),
            _options(body),
            _recipients(body),
            _flag(body, "sign"),
            description,
            _strings(body, "targets"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "selectors": self.selectors,
            "options": self.options,
            "encryptTo": self.encrypt_to,
            "sign": self.sign,
            "description": self.description,
            "targets": self.targets,
        }


@dataclass(frozen=True)
class RunBody:
    """``POST /api/export/runs``: a built-in profile inline, or a stored profile by name."""

    profile: str
    profile_revision: int | None
    selectors: list[str]
    options: dict[str, str]
    as_of: str | None
    encrypt_to: list[str]
    sign: bool
    targets: list[str]
    allow_empty: bool = False

    _FIELDS = frozenset(
        {
            "profile",
            "profileRevision",
            "selectors",
            "options",
            "asOf",
            "encryptTo",
            "sign",
            "targets",
            "allowEmpty",
        }
    )

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> RunBody:
        _unknown(body, set(cls._FIELDS))
        profile = body.get("profile")
        if not isinstance(profile, str) or not profile:
            raise UsageError(
                "profile is required (a built-in profile or a stored profile's name)",
                details={"field": "profile"},
            )
        revision = body.get("profileRevision")
        if revision is not None and (
            not isinstance(revision, int) or isinstance(revision, bool) or revision < 1
        ):
            raise UsageError(
                "profileRevision must be a positive integer", details={"field": "profileRevision"}
            )
        as_of = body.get("asOf")
        if as_of is not None and not isinstance(as_of, str):
            raise UsageError("asOf must be an RFC 3339 string", details={"field": "asOf"})
        return cls(
            profile,
            revision,
            _strings(body, "selectors"),
            _options(body),
            as_of,
            _recipients(body),
            _flag(body, "sign"),
            _strings(body, "targets"),
            _flag(body, "allowEmpty"),
        )
