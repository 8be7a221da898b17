"""mirror:delta: what changed since a base mirror export, with tombstones; see :mod:`pipelines.mirror`."""

from __future__ import annotations

from pipelines.mirror import BASE_OPTION, MIRROR_OPTIONS, build_delta
from stella.profiles import Profile, ProfileStatus

__all__ = ["PROFILE", "build"]

PROFILE = Profile(
    name="mirror:delta",
    kind="mirror",
    variant="delta",
    revision="r1",
    status=ProfileStatus.AVAILABLE,
    contents="changes since a base mirror export: added and changed records, tombstones for removed ones",
    consumer="stella mirror import",
    options=(BASE_OPTION, *MIRROR_OPTIONS),
)

build = build_delta
