"""The one table of export profiles: each profile's descriptor beside its builder.

A profile is one module under ``pipelines/`` exporting ``PROFILE`` (a
:class:`stella.profiles.Profile`: manifest identity, status, options with types and
defaults) and ``build(pipeline, request, staging)``; registering it is one line in
:data:`REGISTRY`. ``stella export profiles``, ``stella export run --help``, the docs and
:func:`pipelines.export.run_export` all read this table. Planned profiles are listed
in the table without a builder (``ProfileEntry(Profile(..., status=ProfileStatus.PLANNED))``)
until their module lands.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import apache_beam as beam

from pipelines import json_policy, json_raw, mirror_delta, mirror_full, trivy_db, trivy_java_db
from stella.bundle.request import ExportRequest
from stella.errors import ProfileUnavailableError, UsageError
from stella.model import LedgerRecord
from stella.profiles import Profile, ProfileStatus

__all__ = ["REGISTRY", "Builder", "ProfileEntry", "builder_for", "get_profile", "keep_for"]

Builder = Callable[[beam.Pipeline, ExportRequest, str], beam.PCollection]
"""(pipeline, request, staging root: a local folder or a ``gs://`` prefix) -> the manifest step.

It runs on the driver: what only the driver can read (mirror:delta's base) it copies under
the staging root's ``RUNS_DIR``, so the steps it builds never name a driver path."""


@dataclass(frozen=True)
class ProfileEntry:
    """A profile and the builder that compiles it (``None`` while the profile is planned).

    ``keep`` is the profile's own filter over the selected records (``None``: it takes every
    one); its pipeline applies the same function, so ``stella export plan --profile`` counts
    what a run writes.
    """

    profile: Profile
    build: Builder | None = None
    keep: Callable[[LedgerRecord], bool] | None = None


def _table(*entries: ProfileEntry) -> Mapping[str, ProfileEntry]:
    return {entry.profile.name: entry for entry in entries}


REGISTRY: Mapping[str, ProfileEntry] = _table(
    ProfileEntry(json_raw.PROFILE, json_raw.build),
    ProfileEntry(json_policy.PROFILE, json_policy.build),
    ProfileEntry(trivy_db.PROFILE, trivy_db.build, keep=trivy_db.KEEP),
    ProfileEntry(trivy_java_db.PROFILE, trivy_java_db.build, keep=trivy_java_db.KEEP),
    ProfileEntry(mirror_full.PROFILE, mirror_full.build),
    ProfileEntry(mirror_delta.PROFILE, mirror_delta.build),
)


def get_profile(name: str, *, require_available: bool = True) -> Profile:
    """Look a profile up by name.

    Raises:
        UsageError: unknown name (lists the known ones).
        ProfileUnavailableError: known but not built yet.
    """
    entry = REGISTRY.get(name)
    if entry is None:
        raise UsageError(
            f"unknown profile {name!r}; profiles: {', '.join(REGISTRY)}",
            details={"profile": name, "profiles": list(REGISTRY)},
        )
    if require_available and entry.profile.status is not ProfileStatus.AVAILABLE:
        raise ProfileUnavailableError(
            f"profile {name} is {entry.profile.status.value} and not available in this build",
            details={"profile": name, "status": entry.profile.status.value},
        )
    return entry.profile


def builder_for(name: str) -> Builder:
    """The builder of an available profile.

    Raises:
        UsageError: unknown name.
        ProfileUnavailableError: the profile has no builder in this build.
    """
    build = REGISTRY[get_profile(name).name].build
    if build is None:
        raise ProfileUnavailableError(
            f"profile {name} has no pipeline in this build", details={"profile": name}
        )
    return build


def keep_for(name: str) -> Callable[[LedgerRecord], bool]:
    """The filter an available profile applies to the selected records (every record by default)."""
    keep = REGISTRY[get_profile(name).name].keep
    return keep if keep is not None else _every_record


def _every_record(record: LedgerRecord) -> bool:
    return True
