"""The last join, for one vulnerability: its matches meet the VEX statements naming it.

For each match, the statements that apply are resolved (:func:`~stella.findings.vex.resolve`),
the pinned policy decides (:func:`~stella.policy.evaluate.evaluate`) at the export's time,
and the finding becomes sortable items plus counts for the manifest. Pure, so any worker
of any runner gives the same items for the same group.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from stella.findings.match import Match
from stella.findings.records import facts_of, finding_items, finding_line
from stella.findings.vex import Statement, applies, resolve
from stella.policy.evaluate import evaluate
from stella.policy.language import Policy
from stella.sorting import SortItem

__all__ = ["evaluate_matches"]


def evaluate_matches(
    matches: Iterable[Match], statements: Iterable[Statement], policy: Policy, as_of: str
) -> tuple[list[SortItem], Counter[str]]:
    by_id: dict[str, list[Statement]] = {}
    for statement in statements:
        for vid in statement.ids:
            by_id.setdefault(vid, []).append(statement)
    items: list[SortItem] = []
    counts: Counter[str] = Counter()
    for match in matches:
        found = [
            s for s in by_id.get(match.vulnerability, ()) if applies(s, match.component, match.vulnerability)
        ]
        resolution = resolve(found)
        facts = facts_of(match, resolution)
        verdict = evaluate(policy, facts, as_of)
        items.extend(finding_items(match, finding_line(match, resolution, facts, verdict)))
        counts["findings"] += 1
        counts[f"verdict:{verdict.value}"] += 1
        counts[f"status:{resolution.status}"] += 1
        counts["vexConflicts"] += bool(resolution.conflicts)
        counts["exceptionsApplied"] += verdict.exception is not None
        counts["exceptionsExpired"] += bool(verdict.expired_exceptions)
    return items, counts
