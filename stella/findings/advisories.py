"""OSV records -> what each says about each package, read once by the Trivy adapter's own reader.

:func:`~stella.adapters.trivy.osv.affected_packages` is the one reading of OSV ranges in
this project; this module only adds what a finding shows besides ranges: the ids it is
reported under, fix versions, and the severities as the sources state them, with CVSS
base scores computed from their vectors by the ``cvss`` library (never re-ranked: a
record with two vectors keeps both).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cvss import CVSS2, CVSS3, CVSS4

from stella.adapters.trivy.ecosystems import language_ecosystems
from stella.adapters.trivy.osv import affected_packages, vulnerability_ids
from stella.adapters.trivy.versions import Interval, Scheme, render_interval
from stella.findings.purls import match_key
from stella.model import LedgerRecord

__all__ = ["Affected", "Severity", "advisory_affected", "latest_revisions", "revision_rank", "severities"]


@dataclass(frozen=True, slots=True)
class Severity:
    source: str  # the advisory id stating it
    type: str  # CVSS_V2 | CVSS_V3 | CVSS_V4 | text
    vector: str | None
    score: float | None
    level: str | None  # none | low | medium | high | critical

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "type": self.type,
            "vector": self.vector,
            "score": self.score,
            "level": self.level,
        }


@dataclass(frozen=True, slots=True)
class Affected:
    """One (advisory record, package) pair: the advisory side of the join."""

    advisory: str
    digest: str
    modified: str | None
    published: str | None
    ids: tuple[str, ...]  # reported under (CVE aliases, else the record id)
    aliases: tuple[str, ...]  # every other id of the record
    key: tuple[str, str]
    scheme: Scheme
    intervals: tuple[Interval, ...]
    listed: tuple[str, ...]
    fixed: tuple[str, ...]
    severity: tuple[Severity, ...]

    def ranges(self) -> list[str]:
        return [render_interval(self.scheme, interval) or "*" for interval in self.intervals]


_BY_TRIVY = {eco.trivy: eco for eco in language_ecosystems()}
_TEXT_LEVELS = {
    "LOW": "low",
    "MODERATE": "medium",
    "MEDIUM": "medium",
    "HIGH": "high",
    "CRITICAL": "critical",
}
_CVSS = {"CVSS_V2": CVSS2, "CVSS_V3": CVSS3, "CVSS_V4": CVSS4}


def _cvss(kind: str, vector: str) -> tuple[float | None, str | None]:
    try:
        parsed = _CVSS[kind](vector)
        return float(parsed.base_score), str(parsed.severities()[0]).lower()
    except Exception:  # the library raises its own CVSSError subclasses and ValueError
        return None, None


def _cvss2_level(score: float) -> str:
    # CVSS v2 has no qualitative scale in its spec; NVD's bands are the common reading.
    return "low" if score < 4 else "medium" if score < 7 else "high"


def severities(document: Mapping[str, Any], source: str) -> tuple[Severity, ...]:
    """Every severity the record states, in document order (record level, then affected[])."""
    stated: list[Any] = (
        list(document.get("severity") or []) if isinstance(document.get("severity"), list) else []
    )
    for item in document.get("affected") or []:
        if isinstance(item, Mapping) and isinstance(item.get("severity"), list):
            stated.extend(item["severity"])
    out: list[Severity] = []
    for sev in stated:
        if not isinstance(sev, Mapping) or not isinstance(sev.get("score"), str):
            continue
        kind = str(sev.get("type"))
        if kind not in _CVSS:
            continue
        score, level = _cvss(kind, sev["score"])
        if kind == "CVSS_V2" and score is not None:
            level = _cvss2_level(score)
        entry = Severity(source, kind, sev["score"], score, level)
        if entry not in out:
            out.append(entry)
    db = document.get("database_specific")
    text = db.get("severity") if isinstance(db, Mapping) else None
    if isinstance(text, str) and text.upper() in _TEXT_LEVELS:
        out.append(Severity(source, "text", None, None, _TEXT_LEVELS[text.upper()]))
    return tuple(out)


def advisory_affected(record: LedgerRecord) -> list[Affected]:
    """The (package, ranges) pairs of one OSV record; withdrawn or unreadable records give none."""
    doc = json.loads(record.document)
    if not isinstance(doc, Mapping) or doc.get("withdrawn") is not None:
        return []
    record_id, affected = doc.get("id"), doc.get("affected")
    aliases = doc.get("aliases") or []
    if not isinstance(record_id, str) or not isinstance(affected, list) or not isinstance(aliases, list):
        return []
    aliases = [a for a in aliases if isinstance(a, str)]
    ids, others = vulnerability_ids(record_id, aliases)
    packages, _problems = affected_packages(affected, record_id)
    published = doc.get("published") if isinstance(doc.get("published"), str) else None
    stated = severities(doc, record_id)
    out: list[Affected] = []
    for (bucket, package), pkg in sorted(packages.items()):
        # An OS advisory is keyed by its release's bucket ("debian 12"), as OS components are.
        key = (
            (bucket, package)
            if pkg.placement.is_os
            else match_key(_BY_TRIVY[bucket.split("::", 1)[0]], package)
        )
        out.append(
            Affected(
                advisory=record.upstream_id,
                digest=record.digest,
                modified=record.modified,
                published=published,
                ids=tuple(ids),
                aliases=tuple(others),
                key=key,
                scheme=pkg.placement.scheme,
                intervals=tuple(dict.fromkeys(pkg.intervals)),
                listed=tuple(dict.fromkeys(pkg.listed)),
                fixed=tuple(dict.fromkeys(pkg.fixed)),
                severity=stated,
            )
        )
    return out


def latest_revisions(records: Iterable[LedgerRecord]) -> list[LedgerRecord]:
    """The latest revision of each advisory id (by ``modified``, ties to the larger digest).

    The ledger is append-only and keeps every revision; unioning them would resurrect
    ranges a feed has since corrected, so only the latest counts (as in trivy:db).
    """
    best: dict[str, LedgerRecord] = {}
    for record in records:
        held = best.get(record.upstream_id)
        if held is None or revision_rank(record) > revision_rank(held):
            best[record.upstream_id] = record
    return [best[k] for k in sorted(best)]


def revision_rank(record: LedgerRecord) -> tuple[str, str]:
    """Orders the revisions of one advisory id: the largest is the latest (by ``modified``, then digest)."""
    moment = record.modified
    stamp = "" if moment is None else datetime.fromisoformat(moment).isoformat(timespec="microseconds")
    return stamp, record.digest
