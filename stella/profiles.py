"""The profile catalogue: what each export profile is and whether this build has it."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from stella.errors import ProfileUnavailableError, UsageError

__all__ = ["PROFILES", "Profile", "ProfileStatus", "get_profile"]


class ProfileStatus(enum.StrEnum):
    AVAILABLE = "available"
    PLANNED = "planned"


@dataclass(frozen=True)
class Profile:
    name: str
    kind: str
    variant: str
    revision: str
    status: ProfileStatus
    contents: str
    consumer: str

    def to_json(self) -> dict[str, str]:
        """The manifest's ``profile`` object (StellaOps run-manifest field names)."""
        return {"kind": self.kind, "variant": self.variant, "name": self.name, "revision": self.revision}


PROFILES: Mapping[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "json:raw",
            "json",
            "raw",
            "r1",
            ProfileStatus.AVAILABLE,
            "canonical advisories, SBOMs and VEX as sorted .jsonl.zst shards with digests",
            "any JSON tooling; zstd -d",
        ),
        Profile(
            "json:policy",
            "json",
            "policy",
            "r1",
            ProfileStatus.PLANNED,
            "json:raw + pinned policy snapshot + evaluated findings (own subtree)",
            "any JSON tooling",
        ),
        Profile(
            "trivy:db",
            "trivy",
            "db",
            "r1",
            ProfileStatus.PLANNED,
            "Trivy vulnerability DB schema 2 (bbolt) as db.tar.gz and OCI layout",
            "Trivy 0.76",
        ),
        Profile(
            "trivy:java-db",
            "trivy",
            "java-db",
            "r1",
            ProfileStatus.PLANNED,
            "Trivy Java DB schema 1 (SQLite: jar SHA-1 -> Maven GAV)",
            "Trivy 0.76",
        ),
        Profile(
            "mirror:full",
            "mirror",
            "full",
            "r1",
            ProfileStatus.PLANNED,
            "all evidence, indexes, policy snapshot and provenance for an air-gapped mirror",
            "stella mirror import",
        ),
        Profile(
            "mirror:delta",
            "mirror",
            "delta",
            "r1",
            ProfileStatus.PLANNED,
            "changes since a base export: added, changed, tombstones",
            "stella mirror import",
        ),
    )
}


def get_profile(name: str, *, require_available: bool = True) -> Profile:
    """Look a profile up by name.

    Raises:
        UsageError: unknown name (lists the known ones).
        ProfileUnavailableError: known but not built yet.
    """
    profile = PROFILES.get(name)
    if profile is None:
        raise UsageError(
            f"unknown profile {name!r}; profiles: {', '.join(PROFILES)}",
            details={"profile": name, "profiles": list(PROFILES)},
        )
    if require_available and profile.status is not ProfileStatus.AVAILABLE:
        raise ProfileUnavailableError(
            f"profile {name} is {profile.status.value} and not available in this build",
            details={"profile": name, "status": profile.status.value},
        )
    return profile
