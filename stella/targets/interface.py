"""The targets port: where a finished bundle goes, and the egress rule every remote target obeys.

A target receives something already built and verified locally (a staged bundle folder
or an OCI image layout) and publishes it; it never builds content. Remote targets are
explicit configuration: the export is offline by default, so a destination host must be
on the operator's allowlist (loopback excepted, which never leaves the machine).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from stella.targets.egress import check_egress, is_loopback

__all__ = ["PublishResult", "Target", "TargetResult", "check_egress", "is_loopback"]


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Where the content landed, the digest that names it there, and whether it was already there."""

    location: str
    digest: str
    unchanged: bool = False


@runtime_checkable
class Target(Protocol):
    """Publishes a verified local bundle folder to one destination.

    ``url`` is the destination as configured (no credentials); ``endpoints`` lists every
    host:port the target will contact, so the egress rule can refuse the whole publish
    before any target sends a byte. ``publish`` must be idempotent: the same bundle
    (same manifest digest) published again is reported ``unchanged`` and sends nothing.
    """

    @property
    def kind(self) -> str:
        """``file``, ``gs`` or ``oci``: the metric label and the result's type."""
        ...

    @property
    def url(self) -> str: ...

    def endpoints(self) -> list[tuple[str, int | None]]: ...

    def publish(self, bundle: Path) -> PublishResult:
        """Publish ``bundle``; raise a :class:`stella.errors.StellaError` on refusal or failure."""
        ...


@dataclass(frozen=True, slots=True)
class TargetResult:
    """What one target did with one bundle: recorded on the run, shown by every surface."""

    target: str
    kind: str
    status: str  # published | unchanged | failed
    attempts: int
    location: str | None = None
    digest: str | None = None
    error: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "kind": self.kind,
            "status": self.status,
            "attempts": self.attempts,
            "location": self.location,
            "digest": self.digest,
            "error": self.error,
        }
