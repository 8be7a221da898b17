"""The profile catalogue: what each export profile is and whether this build has it."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from stella.errors import ProfileUnavailableError, UsageError

__all__ = ["PROFILES", "Profile", "ProfileStatus", "get_profile", "parse_profile_options"]


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
    options: tuple[str, ...] = ()  # the ``--option`` keys this profile accepts

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
            ProfileStatus.AVAILABLE,
            "json:raw + pinned policy snapshot + evaluated findings (own subtree)",
            "any JSON tooling; DuckDB/pyarrow for the Parquet findings",
            ("policy-snapshot",),
        ),
        Profile(
            "trivy:db",
            "trivy",
            "db",
            "r1",
            ProfileStatus.AVAILABLE,
            "Trivy vulnerability DB schema 2 (bbolt) as db.tar.gz and OCI layout",
            "Trivy 0.76",
            ("next-update",),
        ),
        Profile(
            "trivy:java-db",
            "trivy",
            "java-db",
            "r1",
            ProfileStatus.AVAILABLE,
            "Trivy Java DB schema 1 (SQLite: jar SHA-1 -> Maven GAV)",
            "Trivy 0.76",
            ("next-update",),
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


_OPTION_KEY = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")


def parse_profile_options(pairs: Sequence[str], profile: Profile) -> dict[str, str]:
    """``--option key=value`` pairs as the request's ``options`` (keys camelCased, as in the manifest).

    Every profile declares the keys it accepts, so a typo fails here, before the ledger
    is read, whatever the profile; the profile's pipeline still validates the values.

    Raises:
        UsageError: not ``key=value``, a malformed or repeated key, or a key the profile
            does not accept (the message lists the ones it does).
    """
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not _OPTION_KEY.match(key):
            raise UsageError(
                f"--option {pair!r}: expected key=value with a lower-case key (e.g. next-update=48h)",
                details={"option": pair},
            )
        if key not in profile.options:
            known = ", ".join(profile.options) or "none"
            raise UsageError(
                f"--option {key}: profile {profile.name} has no such option; its options: {known}",
                details={"option": key, "profile": profile.name, "options": list(profile.options)},
            )
        name = re.sub(r"-([a-z0-9])", lambda m: m.group(1).upper(), key)
        if name in options:
            raise UsageError(f"--option {key} is given twice", details={"option": key})
        options[name] = value
    return options
