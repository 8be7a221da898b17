"""Findings do not depend on record order, batch (segment) cuts, arrival order or workers.

The real steps of ``FindFindings`` run here over the scenario's records cut into
arbitrary batches: each batch keyed and written as a real sorted run, the slices of
each partition (any number of them) handed to the real ``JoinBucketFn`` in an arbitrary order (what a shuffle across
N workers does), with the joins' outputs spilled to runs again; the sorted finding
items must never change.
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Iterable
from functools import partial
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

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
from stella.ledger.ingest import to_record
from stella.model import LedgerRecord
from stella.policy.language import parse_policy
from stella.slicetable import SliceTable
from stella.sorting import BUCKETS, RunSlice, SortItem, shard_of_bucket, write_run
from tests.policy.scenario import AS_OF, POLICY, advisories, sbom_a, sbom_b, vex_documents
from transforms.joins import PARTITIONS, JoinBucketFn, KeyJoin

POLICY_ = parse_policy(POLICY)


def _os_documents() -> list[Any]:
    """A Debian 12 image SBOM and Debian advisories: OS packages go through the same joins."""
    sbom = {
        "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
        "serialNumber": "urn:uuid:dddddddd-0000-4000-8000-0000000000d1",
        "metadata": {"component": {"type": "container", "name": "image", "bom-ref": "image"}},
        "components": [
            {"type": "operating-system", "name": "debian", "version": "12.5", "bom-ref": "os"},
            {"type": "library", "name": "openssl", "bom-ref": "o",
             "purl": "pkg:deb/debian/openssl@3.0.11-1~deb12u2?distro=debian-12.5"},
            {"type": "library", "name": "bsdutils", "bom-ref": "b",
             "purl": "pkg:deb/debian/bsdutils@1%3A2.38.1-5%2Bdeb12u1?distro=debian-12.5",
             "properties": [{"name": "aquasecurity:trivy:SrcName", "value": "util-linux"},
                            {"name": "aquasecurity:trivy:SrcVersion", "value": "2.38.1"},
                            {"name": "aquasecurity:trivy:SrcRelease", "value": "5+deb12u1"}]},
        ],
    }  # fmt: skip

    def dsa(vid: str, name: str, fixed: str) -> dict[str, Any]:
        events = [{"introduced": "0"}, {"fixed": fixed}]
        return {"id": vid, "modified": "2026-01-01T00:00:00Z",
                "affected": [{"package": {"ecosystem": "Debian:12", "name": name},
                              "ranges": [{"type": "ECOSYSTEM", "events": events}]}]}  # fmt: skip

    return [sbom, dsa("DSA-9001", "openssl", "3.0.13-1~deb12u1"), dsa("DSA-9002", "util-linux", "1:2.38.1-5+deb12u1"),
            dsa("DSA-9003", "openssl", "3.0.11-1~deb12u1")]  # fmt: skip


def _records() -> list[LedgerRecord]:
    docs: list[Any] = [*advisories(), sbom_a(), sbom_b(), *vex_documents().values(), *_os_documents()]
    return [
        to_record(
            json.dumps(doc).encode(), tenant="acme", source=f"doc{i}", ingested_at="2026-06-15T00:00:00Z"
        )
        for i, doc in enumerate(docs)
    ]


RECORDS = _records()


def _runs(temp: str, batches: Iterable[list[SortItem]]) -> list[RunSlice]:
    return [piece for batch in batches for piece in write_run(temp, batch)]


def _join(
    temp: str,
    slices: list[RunSlice],
    sides: list[str],
    join: KeyJoin,
    rng: random.Random,
    context: Any = None,
) -> list[list[SortItem]]:
    """One JoinRuns step: slices grouped by partition, partitions and slices in a shuffled order."""
    partitions = rng.choice([1, 3, PARTITIONS, BUCKETS])
    groups: dict[int, list[RunSlice]] = {}
    for piece in slices:
        if piece.group in sides:
            groups.setdefault(shard_of_bucket(piece.bucket, partitions), []).append(piece)
    order = list(groups.items())
    rng.shuffle(order)
    fn = JoinBucketFn(sorted(sides), join, temp, batch_size=rng.randint(1, 8))
    out: list[list[SortItem]] = []
    for partition, pieces in order:
        rng.shuffle(pieces)
        tables = SliceTable.pack(pieces)
        rng.shuffle(tables)
        out.extend(batch for batch, _counts in fn.process((partition, tables), context))
    return out


def findings(batches: list[list[LedgerRecord]], rng: random.Random) -> list[SortItem]:
    """The pipeline of FindFindings, step by step, through real run files."""
    with tempfile.TemporaryDirectory() as temp:
        keyed = _runs(temp, ([i for r in b for i in record_items(r)] for b in batches))
        latest = _runs(temp, _join(temp, keyed, [REVISIONS], pick_latest, rng))
        matches = _runs(temp, _join(temp, keyed + latest, [COMPONENTS, ADVISORIES], join_package, rng))
        evaluate = partial(evaluate_vulnerability, POLICY_)
        found = _join(temp, keyed + matches, [MATCHES, STATEMENTS], evaluate, rng, AS_OF)
        return sorted(item for batch in found for item in batch)


BASELINE = findings([RECORDS], random.Random(0))


def test_the_baseline_holds_the_scenarios_findings() -> None:
    # each finding as a JSON-lines item and a Parquet item: the scenario's 6, and 2 OS ones (DSA-9001, DSA-9002)
    assert len(BASELINE) == 2 * (6 + 2)


@settings(max_examples=30, deadline=None)
@given(
    order=st.permutations(range(len(RECORDS))),
    cuts=st.sets(st.integers(min_value=1, max_value=len(RECORDS) - 1), max_size=6),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    workers=st.integers(min_value=1, max_value=4),
)
def test_findings_do_not_depend_on_order_cuts_or_workers(
    order: list[int], cuts: set[int], seed: int, workers: int
) -> None:
    records = [RECORDS[i] for i in order]
    bounds = [0, *sorted(cuts), len(records)]
    segments = [records[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
    # N workers each take every N-th segment; their outputs interleave in any order.
    batches = [seg for w in range(workers) for seg in segments[w::workers]]
    assert findings(batches, random.Random(seed)) == BASELINE
