"""Policy evaluation: one finding's facts + a snapshot + the export's time -> a verdict. Pure.

Rules are read in order and the first whose conditions all hold decides; no rule
matching gives the policy's ``defaultVerdict``. An exception that matches and has not
expired at ``as_of`` (the export's ``generatedAt``, never the clock) then overrides the
verdict, and the rule it overrode is still recorded; an exception that matches but has
expired is recorded as such and changes nothing, so a lapsed waiver is visible in the
findings rather than silently gone.

Severity conditions read the levels the sources state (CVSS ratings computed from their
vectors, or the feed's own word): the highest stated level is what ``atLeast`` compares,
because a policy asks "does anyone credible call this critical?". Nothing is re-ranked or
written back to the advisory.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase

from stella.policy.language import LEVELS, Conditions, Policy

__all__ = ["FindingFacts", "Verdict", "evaluate"]

_RANK = {level: rank for rank, level in enumerate(LEVELS)}


@dataclass(frozen=True, slots=True)
class FindingFacts:
    """What a policy may look at, already extracted from the finding."""

    vulnerability_id: str
    aliases: tuple[str, ...]
    ecosystem: str
    package: str
    purl: str
    levels: tuple[str, ...]  # stated severity levels, lower case (none/low/medium/high/critical)
    cvss_scores: tuple[float, ...]
    fix_available: bool
    vex_status: str
    justification: str | None
    vex_conflict: bool
    published: str | None


@dataclass(frozen=True, slots=True)
class Verdict:
    value: str  # pass | warn | fail
    rule: str  # the deciding rule id, or "default"
    exception: str | None = None  # the exception that overrode the rule
    expired_exceptions: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "value": self.value,
            "rule": self.rule,
            "exception": self.exception,
            "expiredExceptions": list(self.expired_exceptions),
        }


def _days(published: str, as_of: str) -> float:
    return (datetime.fromisoformat(as_of) - datetime.fromisoformat(published)).total_seconds() / 86400


def _holds(c: Conditions, f: FindingFacts, as_of: str) -> bool:
    top = max((_RANK.get(level, 0) for level in f.levels), default=None)
    if c.severity_at_least is not None and (top is None or top < _RANK[c.severity_at_least]):
        return False
    if c.severity_below is not None and (top is None or top >= _RANK[c.severity_below]):
        return False
    score = max(f.cvss_scores, default=None)
    if c.cvss_at_least is not None and (score is None or score < c.cvss_at_least):
        return False
    if c.cvss_below is not None and (score is None or score >= c.cvss_below):
        return False
    if c.fix_available is not None and c.fix_available != f.fix_available:
        return False
    if c.vex_status and f.vex_status not in c.vex_status:
        return False
    if c.justification and f.justification not in c.justification:
        return False
    if c.vex_conflict is not None and c.vex_conflict != f.vex_conflict:
        return False
    if c.ecosystems and f.ecosystem.lower() not in {e.lower() for e in c.ecosystems}:
        return False
    if c.packages and not any(fnmatchcase(f.package, p) for p in c.packages):
        return False
    if c.purls and not any(fnmatchcase(f.purl, p) for p in c.purls):
        return False
    if c.ids and not ({f.vulnerability_id, *f.aliases} & set(c.ids)):
        return False
    if c.age_at_least is not None or c.age_below is not None:
        if f.published is None:
            return False
        age = _days(f.published, as_of)
        if c.age_at_least is not None and age < c.age_at_least:
            return False
        if c.age_below is not None and age >= c.age_below:
            return False
    return True


def evaluate(policy: Policy, facts: FindingFacts, as_of: str) -> Verdict:
    """The verdict for one finding at ``as_of`` (UTC RFC 3339)."""
    value, rule = policy.default_verdict, "default"
    for candidate in policy.rules:
        if _holds(candidate.when, facts, as_of):
            value, rule = candidate.verdict, candidate.id
            break
    expired: list[str] = []
    moment = datetime.fromisoformat(as_of)
    for exception in policy.exceptions:
        if not _holds(exception.match, facts, as_of):
            continue
        if datetime.fromisoformat(exception.expires) <= moment:
            expired.append(exception.id)
            continue
        return Verdict(exception.verdict, rule, exception.id, tuple(expired))
    return Verdict(value, rule, None, tuple(expired))
