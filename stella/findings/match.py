"""The join itself, inside one partition: components meet the advisories with their key.

Pure and order-free: the output is sorted, and a (component, vulnerability) met through
several advisories (a PYSEC and a GHSA record of one CVE) is one match carrying both.
A version is affected when it equals a listed version or lies in any interval, compared
with :func:`~stella.adapters.trivy.versions.version_key` -- the same ordering the Trivy DB
is built with. An installed version the ecosystem cannot parse matches nothing (Trivy's
comparers skip it too), which is counted by the caller rather than guessed at.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from stella.adapters.trivy.versions import Interval, same_version, version_key
from stella.findings.advisories import Affected
from stella.findings.components import Component

__all__ = ["Match", "affects", "match_partition", "matched_ranges"]


@dataclass(frozen=True, slots=True)
class Match:
    component: Component
    vulnerability: str
    affected: tuple[Affected, ...]  # sorted by advisory id
    matched: tuple[tuple[str, ...], ...]  # per advisory, the constraints the version met

    @property
    def ident(self) -> tuple[str, str, str, str]:
        return (self.component.sbom, self.component.sbom_digest, self.component.ref.purl, self.vulnerability)


def _inside(key: Any, interval: Interval, bound: Any) -> bool | None:
    lower, upper, limit = (
        None if b is None else bound(b) for b in (interval.lower, interval.upper, interval.limit)
    )
    if (interval.lower is not None and lower is None) or (interval.upper is not None and upper is None):
        return None
    if interval.limit is not None and limit is None:
        return None
    if lower is not None and key < lower:
        return False
    if upper is not None and (key > upper or (key == upper and not interval.upper_inclusive)):
        return False
    return not (limit is not None and not key < limit)


def matched_ranges(affected: Affected, version: str) -> list[str]:
    """The constraints of ``affected`` that hold for ``version`` ("=v" for a listed version)."""
    key = version_key(affected.scheme, version)
    if key is None:
        return []

    def bound(raw: str) -> Any:
        return version_key(affected.scheme, raw)

    found = [
        text
        for interval, text in zip(affected.intervals, affected.ranges(), strict=True)
        if _inside(key, interval, bound) is True
    ]
    if any(same_version(affected.scheme, v, version) for v in affected.listed):
        found.append(f"={version}")
    return found


def affects(affected: Affected, version: str) -> bool:
    """OSV's rule for one installed version, in the advisory's version scheme."""
    return bool(matched_ranges(affected, version))


def match_partition(components: Iterable[Component], affected: Iterable[Affected]) -> list[Match]:
    """Every (component, vulnerability) the partition's advisories make vulnerable, sorted."""
    by_key: dict[tuple[str, str], list[Affected]] = {}
    for item in affected:
        by_key.setdefault(item.key, []).append(item)
    found: dict[tuple[str, str, str, str], tuple[Component, dict[Affected, tuple[str, ...]]]] = {}
    for component in components:
        for item in by_key.get(component.ref.key, ()):
            matched = matched_ranges(item, component.matched_version)
            if not matched:
                continue
            for vid in item.ids:
                ident = (component.sbom, component.sbom_digest, component.ref.purl, vid)
                found.setdefault(ident, (component, {}))[1][item] = tuple(matched)
    out: list[Match] = []
    for ident, (component, items) in sorted(found.items()):
        ordered = sorted(items, key=lambda a: (a.advisory, a.digest))
        # Ranges and listed versions are spent once matched (``matched`` keeps what held);
        # dropped, so the next shuffle does not carry every release PyPA lists.
        slim = tuple(replace(a, intervals=(), listed=()) for a in ordered)
        out.append(Match(component, ident[3], slim, tuple(items[a] for a in ordered)))
    return out
