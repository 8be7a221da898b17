"""``FindFindings``: SBOM components x advisories x VEX x policy, as three joins spilled to disk.

Each record batch becomes one sorted run file holding every side it feeds (advisory
revisions by id, components by package, VEX statements by vulnerability id); each
``JoinRuns`` merges those runs back a partition of hash buckets at a time and co-groups them one key
at a time with a pure function of :mod:`stella.findings.joins`, whose output is written
as the next join's runs. Only run descriptors pass through a shuffle, so memory stays
flat as the input grows, and no step joins anything in the driver.

    batches --KeyRecords--WriteRuns--+--PickLatestRevisions--WriteRuns--\\
                                     +----------------------------------+--JoinPackages--WriteRuns--\\
                                     +---------------------------------------------------------------+--EvaluatePolicy
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from functools import partial

import apache_beam as beam

from stella.findings.joins import (
    ADVISORIES,
    COMPONENTS,
    MATCHES,
    REVISIONS,
    STATEMENTS,
    evaluate_vulnerability,
    join_package,
    pick_latest,
    record_items,
)
from stella.model import LedgerRecord
from stella.policy.language import Policy
from transforms.coders import ItemBatch
from transforms.joins import COUNTS, ITEMS, JoinRuns
from transforms.shards import WriteRuns

__all__ = ["FindFindings", "sum_counts"]


def _key_records(batch: list[LedgerRecord]) -> ItemBatch:
    return ItemBatch(item for record in batch for item in record_items(record))


def sum_counts(counters: Iterable[Counter[str]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for counter in counters:
        total.update(counter)
    return dict(sorted(total.items()))


class FindFindings(beam.PTransform):  # type: ignore[misc]
    """Record batches -> ``{"items": ItemBatch of finding lines, "counts": one dict}``.

    ``as_of`` is a singleton PCollection of the time the policy is evaluated at (the
    export's ``generatedAt``), so exception expiry depends on the data, not the clock.
    ``temp_dir`` holds the joins' run files (under the run's staging, visible to every
    worker, removed with it).
    """

    def __init__(self, policy: Policy, as_of: beam.PCollection, *, temp_dir: str) -> None:
        super().__init__()
        self._policy = policy
        self._as_of = as_of
        self._temp_dir = temp_dir

    def expand(self, batches: beam.PCollection) -> dict[str, beam.PCollection]:
        temp = self._temp_dir
        keyed = (
            batches
            | "KeyRecords" >> beam.Map(_key_records).with_output_types(ItemBatch)
            | "WriteKeyedRuns" >> WriteRuns(temp)
        )
        latest = (keyed | "PickLatestRevisions" >> JoinRuns([REVISIONS], pick_latest, temp_dir=temp))[
            ITEMS
        ] | "WriteAdvisoryRuns" >> WriteRuns(temp)
        matches = (
            (keyed, latest)
            | "PackageRuns" >> beam.Flatten()
            | "JoinPackages" >> JoinRuns([COMPONENTS, ADVISORIES], join_package, temp_dir=temp)
        )[ITEMS] | "WriteMatchRuns" >> WriteRuns(temp)
        evaluated = (
            (keyed, matches)
            | "VulnerabilityRuns" >> beam.Flatten()
            | "EvaluatePolicy"
            >> JoinRuns(
                [MATCHES, STATEMENTS],
                partial(evaluate_vulnerability, self._policy),
                temp_dir=temp,
                context=beam.pvalue.AsSingleton(self._as_of),
            )
        )
        counts = evaluated[COUNTS] | "SumCounts" >> beam.CombineGlobally(sum_counts)
        return {"items": evaluated[ITEMS], "counts": counts}
