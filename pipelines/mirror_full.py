"""mirror:full: every selected record (json:raw lines) and its Parquet indexes; see :mod:`pipelines.mirror`."""

from __future__ import annotations

from pipelines.mirror import MIRROR_OPTIONS, build_full
from stella.profiles import Profile, ProfileStatus

__all__ = ["PROFILE", "build"]

PROFILE = Profile(
    name="mirror:full",
    kind="mirror",
    variant="full",
    revision="r1",
    status=ProfileStatus.AVAILABLE,
    contents="every selected record (json:raw lines) + Parquet indexes, sequenced and expiring, for an air-gapped mirror",
    consumer="stella mirror import",
    options=MIRROR_OPTIONS,
)

build = build_full
