"""``FindFindings``: SBOM components x advisories x VEX x policy, as two partitioned joins.

Every element is a *batch* keyed by a join partition (CRC-32 of the join key), never a
single component or advisory: Beam pays per element, so a batch of 20,000 records
becomes at most ``PARTITIONS`` elements per side. Each join is a ``CoGroupByKey`` of
those batches; inside a partition a pure function (:mod:`stella.findings`) does the
dictionary join. No step joins anything in the driver.

    records --KeyComponents---------------------\\
    records --KeyAdvisoryRevisions--GroupByKey--PickLatestRevisions--+--JoinPackages--MatchVersions
    records --KeyStatements------------------------------------------------------------\\
                                                         matches --JoinVulnerabilities--EvaluatePolicy
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import apache_beam as beam

from stella.adapters.trivy.dbitems import is_osv_advisory
from stella.findings.advisories import advisory_affected, latest_revisions
from stella.findings.components import is_sbom_record, sbom_components
from stella.findings.evaluate import evaluate_partition, partition_of
from stella.findings.match import match_partition
from stella.findings.vex import is_vex_record, vex_statements
from stella.model import LedgerRecord
from stella.policy.language import Policy
from transforms.coders import ItemBatch

__all__ = [
    "EvaluatePolicyFn",
    "FindFindings",
    "KeyAdvisoryRevisionsFn",
    "KeyComponentsFn",
    "KeyStatementsFn",
    "MatchVersionsFn",
    "PickLatestRevisionsFn",
    "sum_counts",
]

T = TypeVar("T")


def _by_partition(values: Iterable[T], key: Callable[[T], Iterable[str]]) -> Iterator[tuple[int, list[T]]]:
    groups: dict[int, list[T]] = {}
    for value in values:
        for text in key(value):
            groups.setdefault(partition_of(text), []).append(value)
    yield from sorted(groups.items(), key=lambda kv: kv[0])


def _flat(lists: Iterable[Sequence[T]]) -> Iterator[T]:
    for chunk in lists:
        yield from chunk


class KeyComponentsFn(beam.DoFn):  # type: ignore[misc]
    def process(self, batch: list[LedgerRecord]) -> Iterator[tuple[int, list[Any]]]:
        components = [c for r in batch if is_sbom_record(r) for c in sbom_components(r)]
        yield from _by_partition(components, lambda c: ("\x00".join(c.ref.key),))


class KeyAdvisoryRevisionsFn(beam.DoFn):  # type: ignore[misc]
    def process(self, batch: list[LedgerRecord]) -> Iterator[tuple[int, list[LedgerRecord]]]:
        yield from _by_partition([r for r in batch if is_osv_advisory(r)], lambda r: (r.upstream_id,))


class PickLatestRevisionsFn(beam.DoFn):  # type: ignore[misc]
    """One partition of advisory ids -> the latest revisions' affected packages, re-keyed by package."""

    def process(self, element: tuple[int, Iterable[list[LedgerRecord]]]) -> Iterator[tuple[int, list[Any]]]:
        affected = [a for r in latest_revisions(_flat(element[1])) for a in advisory_affected(r)]
        yield from _by_partition(affected, lambda a: ("\x00".join(a.key),))


class MatchVersionsFn(beam.DoFn):  # type: ignore[misc]
    def process(self, element: tuple[int, dict[str, Iterable[list[Any]]]]) -> Iterator[tuple[int, list[Any]]]:
        groups = element[1]
        matches = match_partition(_flat(groups["components"]), _flat(groups["advisories"]))
        yield from _by_partition(matches, lambda m: (m.vulnerability,))


class KeyStatementsFn(beam.DoFn):  # type: ignore[misc]
    def process(self, batch: list[LedgerRecord]) -> Iterator[tuple[int, list[Any]]]:
        statements = [s for r in batch if is_vex_record(r) for s in vex_statements(r)]
        yield from _by_partition(statements, lambda s: s.ids)


class EvaluatePolicyFn(beam.DoFn):  # type: ignore[misc]
    def __init__(self, policy: Policy) -> None:
        self._policy = policy

    def process(
        self, element: tuple[int, dict[str, Iterable[list[Any]]]], as_of: str
    ) -> Iterator[tuple[ItemBatch, Counter[str]]]:
        groups = element[1]
        matches = list(_flat(groups["matches"]))
        if not matches:
            return
        items, counts = evaluate_partition(matches, _flat(groups["statements"]), self._policy, as_of)
        yield ItemBatch(items), counts


def sum_counts(counters: Iterable[Counter[str]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for counter in counters:
        total.update(counter)
    return dict(sorted(total.items()))


class FindFindings(beam.PTransform):  # type: ignore[misc]
    """Record batches -> ``{"items": ItemBatch of finding lines, "counts": one dict}``.

    ``as_of`` is a singleton PCollection of the time the policy is evaluated at (the
    export's ``generatedAt``), so exception expiry depends on the data, not the clock.
    """

    def __init__(self, policy: Policy, as_of: beam.PCollection) -> None:
        super().__init__()
        self._policy = policy
        self._as_of = as_of

    def expand(self, batches: beam.PCollection) -> dict[str, beam.PCollection]:
        components = batches | "KeyComponents" >> beam.ParDo(KeyComponentsFn())
        advisories = (
            batches
            | "KeyAdvisoryRevisions" >> beam.ParDo(KeyAdvisoryRevisionsFn())
            | "GroupRevisions" >> beam.GroupByKey()
            | "PickLatestRevisions" >> beam.ParDo(PickLatestRevisionsFn())
        )
        matches = (
            {"components": components, "advisories": advisories}
            | "JoinPackages" >> beam.CoGroupByKey()
            | "MatchVersions" >> beam.ParDo(MatchVersionsFn())
        )
        statements = batches | "KeyStatements" >> beam.ParDo(KeyStatementsFn())
        evaluated = (
            {"matches": matches, "statements": statements}
            | "JoinVulnerabilities" >> beam.CoGroupByKey()
            | "EvaluatePolicy"
            >> beam.ParDo(EvaluatePolicyFn(self._policy), as_of=beam.pvalue.AsSingleton(self._as_of))
        )
        items = evaluated | "FindingItems" >> beam.Map(lambda pair: pair[0]).with_output_types(ItemBatch)
        counts = (
            evaluated
            | "FindingCounts" >> beam.Map(lambda pair: pair[1])
            | "SumCounts" >> beam.CombineGlobally(sum_counts)
        )
        return {"items": items, "counts": counts}
