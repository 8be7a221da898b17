"""The targets port: where a finished bundle goes, and what every target promises.

A target receives a bundle already built and verified locally and publishes it; it
never builds content. Remote targets are explicit configuration: the export is offline
by default, so each target refuses, in :meth:`Target.check` and before a byte of the
bundle is read, a destination the egress allowlist does not name
(:mod:`stella.targets.egress`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from stella.targets.egress import ALLOWLIST_ENV, check_egress, egress_allowlist, is_loopback

__all__ = [
    "ALLOWLIST_ENV",
    "PublishResult",
    "Target",
    "TargetResult",
    "check_egress",
    "egress_allowlist",
    "is_loopback",
]


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Where the content landed, the digest that names it there, and whether it was already there."""

    location: str
    digest: str
    unchanged: bool = False


@runtime_checkable
class Target(Protocol):
    """Publishes a verified local bundle folder to one destination.

    ``publish`` must be idempotent: the same bundle (same manifest digest) published
    again is reported ``unchanged`` and sends nothing.
    """

    @property
    def kind(self) -> str:
        """``file``, ``gs`` or ``oci``: the metric label and the result's type."""
        ...

    @property
    def url(self) -> str:
        """The destination as configured, without credentials."""
        ...

    def check(self) -> None:
        """Refuse, without connecting, a destination this target may not reach (egress, syntax).

        Called for every target before any bundle is read, so a refusal costs nothing
        and no target sends a byte when another one is refused.
        """
        ...

    def publish(self, bundle: Path) -> PublishResult:
        """Publish the bundle folder; raise a :class:`stella.errors.StellaError` on refusal or failure."""
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
