"""One error hierarchy for every surface (CLI, HTTP API, Console).

Each error carries a stable ``ERR_EXPORT_*`` code, a human sentence and structured
details. Surfaces catch :class:`StellaError` in exactly one place and map the code to
an exit status (CLI) or an HTTP status (API), so the same failure reads the same way
everywhere. Library code raises; it never prints and never exits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BaseMissingError",
    "BundleIntegrityError",
    "ConflictError",
    "EXIT_CODES",
    "EgressDeniedError",
    "EmptySelectionError",
    "ErrorSpec",
    "ForbiddenError",
    "InputError",
    "MirrorChainError",
    "MirrorExpiredError",
    "MirrorRollbackError",
    "MirrorScopeError",
    "NotFoundError",
    "NotReadyError",
    "PipelineError",
    "PolicySnapshotNotFoundError",
    "PolicySnapshotRequiredError",
    "ProfileUnavailableError",
    "QuotaError",
    "RangeNotSatisfiableError",
    "RemoteError",
    "SignatureError",
    "StellaError",
    "TrustError",
    "UnauthenticatedError",
    "UsageError",
]


@dataclass(frozen=True)
class ErrorSpec:
    """What a code means on each surface: CLI exit status and HTTP status."""

    code: str
    exit_code: int
    http_status: int
    summary: str


# The documented table (docs/errors.md is checked against it by a test). Exit codes
# are grouped so that scripts can tell "your input is wrong" from "the bundle is bad"
# from "the signature or trust policy failed" without parsing messages.
_SPECS: tuple[ErrorSpec, ...] = (
    ErrorSpec("ERR_EXPORT_INTERNAL", 1, 500, "unexpected internal failure (a bug: please report it)"),
    ErrorSpec("ERR_EXPORT_USAGE", 2, 400, "invalid arguments, selector, profile option or request body"),
    ErrorSpec(
        "ERR_EXPORT_CHECKSUM",
        3,
        422,
        "bundle content does not match its manifest (digest, size, count, extra or missing file)",
    ),
    ErrorSpec("ERR_EXPORT_SIGNATURE", 4, 422, "a signature is missing, malformed or does not verify"),
    ErrorSpec(
        "ERR_EXPORT_TRUST",
        5,
        422,
        "signature valid but the key or policy is not trusted (wrong key, replay, expired)",
    ),
    ErrorSpec("ERR_EXPORT_NOT_FOUND", 6, 404, "ledger, tenant, bundle, run or key not found"),
    ErrorSpec("ERR_EXPORT_INPUT", 7, 422, "input documents could not be read or none were usable"),
    ErrorSpec(
        "ERR_EXPORT_EGRESS_DENIED", 8, 403, "a network destination is not allowed by the egress allowlist"
    ),
    ErrorSpec("ERR_EXPORT_CONFLICT", 9, 409, "the destination already exists with different content"),
    ErrorSpec(
        "ERR_EXPORT_PROFILE_UNAVAILABLE", 10, 501, "the profile is known but not available in this build"
    ),
    ErrorSpec("ERR_EXPORT_FORBIDDEN", 11, 403, "the caller lacks the scope or tenant for this action"),
    ErrorSpec("ERR_EXPORT_PIPELINE", 12, 500, "the pipeline runner failed; no bundle was published"),
    ErrorSpec("ERR_EXPORT_REMOTE", 13, 502, "a remote service (registry, object store) refused or failed"),
    ErrorSpec("ERR_EXPORT_QUOTA", 14, 429, "the tenant's quota of concurrent runs is used up; retry later"),
    ErrorSpec(
        "ERR_EXPORT_UNAUTHENTICATED", 15, 401, "no bearer token, or one that is expired, malformed or forged"
    ),
    ErrorSpec("ERR_EXPORT_NOT_READY", 16, 409, "the run has not published a bundle (yet, or ever)"),
    ErrorSpec(
        "ERR_EXPORT_RANGE_NOT_SATISFIABLE",
        2,
        416,
        "the requested byte range starts beyond the end of the file (details.size gives its length)",
    ),
    ErrorSpec(
        "ERR_EXPORT_POLICY_SNAPSHOT_REQUIRED",
        2,
        400,
        "the profile pins a policy (json:policy) and no --option policy-snapshot=<id> was given",
    ),
    ErrorSpec(
        "ERR_EXPORT_POLICY_SNAPSHOT_NOT_FOUND", 6, 404, "no policy snapshot with that id for the tenant"
    ),
    ErrorSpec(
        "ERR_EXPORT_BASE_MISSING",
        17,
        409,
        "a delta's base cannot be found or reconstructed (republish the base or export mirror:full)",
    ),
    ErrorSpec(
        "ERR_EXPORT_MIRROR_ROLLBACK",
        18,
        409,
        "the bundle is not newer than the mirror (sequence not above the current one, or already applied)",
    ),
    ErrorSpec(
        "ERR_EXPORT_MIRROR_EXPIRED", 19, 409, "the mirror bundle expired before this import (freeze attack)"
    ),
    ErrorSpec(
        "ERR_EXPORT_MIRROR_CHAIN",
        20,
        409,
        "a delta does not apply to the mirror's current state (wrong base, skipped or out of order)",
    ),
    ErrorSpec(
        "ERR_EXPORT_MIRROR_SCOPE",
        21,
        409,
        "the bundle belongs to another tenant or mirror name than the mirror",
    ),
    ErrorSpec(
        "ERR_EXPORT_EMPTY_SELECTION",
        22,
        422,
        "the selection matched no records (pass --allow-empty to publish an empty bundle)",
    ),
)

EXIT_CODES: Mapping[str, ErrorSpec] = {spec.code: spec for spec in _SPECS}


class StellaError(Exception):
    """Root of every error this project raises on purpose."""

    code = "ERR_EXPORT_INTERNAL"

    def __init__(self, message: str, *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    @property
    def spec(self) -> ErrorSpec:
        return EXIT_CODES[self.code]

    @property
    def exit_code(self) -> int:
        return self.spec.exit_code

    def to_payload(self, *, trace_id: str, timestamp: str) -> dict[str, Any]:
        """The wire shape shared by the API, the Console and ``--json`` CLI output."""
        return {
            "code": self.code,
            "message": self.message,
            "details": self.details,
            "traceId": trace_id,
            "timestamp": timestamp,
        }


class EmptySelectionError(StellaError):
    code = "ERR_EXPORT_EMPTY_SELECTION"


class UsageError(StellaError):
    code = "ERR_EXPORT_USAGE"


class BundleIntegrityError(StellaError):
    code = "ERR_EXPORT_CHECKSUM"


class SignatureError(StellaError):
    code = "ERR_EXPORT_SIGNATURE"


class TrustError(StellaError):
    code = "ERR_EXPORT_TRUST"


class NotFoundError(StellaError):
    code = "ERR_EXPORT_NOT_FOUND"


class InputError(StellaError):
    code = "ERR_EXPORT_INPUT"


class EgressDeniedError(StellaError):
    code = "ERR_EXPORT_EGRESS_DENIED"


class ConflictError(StellaError):
    code = "ERR_EXPORT_CONFLICT"


class ProfileUnavailableError(StellaError):
    code = "ERR_EXPORT_PROFILE_UNAVAILABLE"


class ForbiddenError(StellaError):
    code = "ERR_EXPORT_FORBIDDEN"


class PipelineError(StellaError):
    code = "ERR_EXPORT_PIPELINE"


class RemoteError(StellaError):
    code = "ERR_EXPORT_REMOTE"


class QuotaError(StellaError):
    """Over a per-tenant limit; ``retry_after`` (seconds) becomes the HTTP ``Retry-After``."""

    code = "ERR_EXPORT_QUOTA"

    def __init__(self, message: str, *, retry_after: int, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, details={**(details or {}), "retryAfter": retry_after})
        self.retry_after = retry_after


class UnauthenticatedError(StellaError):
    code = "ERR_EXPORT_UNAUTHENTICATED"


class NotReadyError(StellaError):
    code = "ERR_EXPORT_NOT_READY"


class RangeNotSatisfiableError(UsageError):
    """A download ``Range`` past the end of the file (HTTP 416); a usage error for the CLI."""

    code = "ERR_EXPORT_RANGE_NOT_SATISFIABLE"


class PolicySnapshotRequiredError(UsageError):
    """A usage error with its own code: CI scripts tell "forgot the pin" from other typos."""

    code = "ERR_EXPORT_POLICY_SNAPSHOT_REQUIRED"


class PolicySnapshotNotFoundError(NotFoundError):
    code = "ERR_EXPORT_POLICY_SNAPSHOT_NOT_FOUND"


class BaseMissingError(StellaError):
    code = "ERR_EXPORT_BASE_MISSING"


class MirrorRollbackError(StellaError):
    code = "ERR_EXPORT_MIRROR_ROLLBACK"


class MirrorExpiredError(StellaError):
    code = "ERR_EXPORT_MIRROR_EXPIRED"


class MirrorChainError(StellaError):
    code = "ERR_EXPORT_MIRROR_CHAIN"


class MirrorScopeError(StellaError):
    code = "ERR_EXPORT_MIRROR_SCOPE"
