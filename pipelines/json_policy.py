"""json:policy compiled to a Beam pipeline: json:raw, plus the pinned policy and its findings.

    ReadLedger -> SelectRecords -> AdaptRecords(jsonraw) -> WriteRuns -----------------\\
                              \\-> FindFindings (joins, VEX, policy) -> WriteRuns -+-> ShardRuns -\\
                              \\-> SummarizeRecords -> EvaluationTime (as_of, side input)          |
    PinPolicySnapshot (data/policy/snapshot.json) ----------------------------------------------+-> AssembleBundle
    FindFindings.counts -> WriteFindingsSummary (data/policy/summary.json) ---------------------/

The raw part is the json:raw payload byte for byte (same items, same shard layout);
everything derived lives under ``data/policy/`` with the snapshot it was derived with.
The manifest's ``policy`` object repeats the summary: verdict and VEX-status counts.
"""

from __future__ import annotations

import json
from typing import Any

import apache_beam as beam

from stella import storage
from stella.adapters.jsonraw import jsonraw_items, shard_path
from stella.bundle.assemble import generated_at
from stella.bundle.manifest import ContentEntry
from stella.bundle.request import ExportRequest
from stella.bundle.shards import write_jsonl_shard
from stella.canonical import dumps
from stella.errors import InputError
from stella.findings.records import FINDINGS_GROUP, PARQUET_GROUP, findings_path, write_parquet_shard
from stella.policy.snapshot import PolicySnapshot, parse_snapshot_id, snapshot_from_bytes
from stella.profiles import Profile, ProfileOption, ProfileStatus
from stella.storage import HashingWriter
from transforms.bundle import AssembleBundle
from transforms.findings import FindFindings
from transforms.ledger import ReadLedger, SelectRecords, SummarizeRecords
from transforms.shards import RUNS_DIR, AdaptRecords, ShardRuns, WriteRuns

__all__ = ["PROFILE", "SNAPSHOT_PATH", "SUMMARY_PATH", "build", "pinned_snapshot"]

PROFILE = Profile(
    name="json:policy",
    kind="json",
    variant="policy",
    revision="r1",
    status=ProfileStatus.AVAILABLE,
    contents="json:raw + pinned policy snapshot + evaluated findings (own subtree)",
    consumer="any JSON tooling; DuckDB/pyarrow for the Parquet findings",
    options=(
        ProfileOption(
            "policy-snapshot",
            "snapshot id (sha256:<64 hex>)",
            "(required)",
            "the policy snapshot to evaluate, from `stella policy publish` / `stella policy list`",
        ),
    ),
)

SNAPSHOT_PATH = "data/policy/snapshot.json"
SUMMARY_PATH = "data/policy/summary.json"


def pinned_snapshot(request: ExportRequest) -> PolicySnapshot:
    """The snapshot the request carries (:func:`stella.bundle.request.new_request` reads it from the store).

    Raises:
        PolicySnapshotRequiredError: the request pins none.
        InputError: the carried bytes are not a canonical snapshot with the pinned id.
    """
    if request.policy_snapshot is None:
        parse_snapshot_id(None)  # raises ERR_EXPORT_POLICY_SNAPSHOT_REQUIRED
    assert request.policy_snapshot is not None
    snapshot = snapshot_from_bytes(request.policy_snapshot, source="the request's policy snapshot")
    if snapshot.id != request.policy_snapshot_id:
        raise InputError(f"the request pins {request.policy_snapshot_id} but carries snapshot {snapshot.id}")
    return snapshot


def _path(group: str, index: int, total: int) -> str:
    return (
        findings_path(group, index, total)
        if group in (FINDINGS_GROUP, PARQUET_GROUP)
        else shard_path(group, index, total)
    )


def _write(root: str, path: str, pairs: Any) -> ContentEntry:
    values = (value for _key, value in pairs)
    return (
        write_parquet_shard(root, path, values)
        if path.endswith(".parquet")
        else write_jsonl_shard(root, path, values)
    )


def _write_json(root: str, path: str, value: Any) -> ContentEntry:
    data = dumps(value)
    with storage.open_write(storage.join(root, path)) as handle:
        sink = HashingWriter(handle)
        sink.write(data)
    return ContentEntry(
        path=path, digest=sink.digest, bytes=sink.size, records=1, content_type="application/json"
    )


def _summary(snapshot: PolicySnapshot, counts: dict[str, int], as_of: str) -> dict[str, Any]:
    def prefixed(prefix: str) -> dict[str, int]:
        return {k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith(prefix)}

    return {
        "snapshotId": snapshot.id,
        "policy": snapshot.policy.name,
        "evaluatedAt": as_of,
        "findings": counts.get("findings", 0),
        "verdicts": {v: prefixed("verdict:").get(v, 0) for v in ("pass", "warn", "fail")},
        "statuses": {
            s: prefixed("status:").get(s, 0)
            for s in ("affected", "not_affected", "fixed", "under_investigation")
        },
        "vexConflicts": counts.get("vexConflicts", 0),
        "exceptionsApplied": counts.get("exceptionsApplied", 0),
        "exceptionsExpired": counts.get("exceptionsExpired", 0),
    }


def build(pipeline: beam.Pipeline, request: ExportRequest, staging: str) -> beam.PCollection:
    snapshot = pinned_snapshot(request)  # a missing or unknown snapshot fails before anything runs
    root = staging
    selected = (
        pipeline
        | "ReadLedger" >> ReadLedger([s.path for s in request.segments], trace=request.trace_context)
        | "SelectRecords" >> SelectRecords(request.selectors)
    )
    summary = selected | "SummarizeRecords" >> SummarizeRecords()
    as_of = summary | "EvaluationTime" >> beam.Map(lambda s: generated_at(request, s.high_water))
    runs = storage.join(staging, RUNS_DIR)
    raw = selected | "AdaptRecords" >> AdaptRecords(jsonraw_items, request.trace_context)
    found = selected | "FindFindings" >> FindFindings(snapshot.policy, as_of, temp_dir=runs)
    # Runs are written next to each producer and only their descriptors flattened: the
    # in-process runner would hold a flattened PCollection of the items themselves in memory.
    shards = (
        (raw | "WriteRawRuns" >> WriteRuns(runs), found["items"] | "WriteFindingRuns" >> WriteRuns(runs))
        | "MergeRuns" >> beam.Flatten()
        | "ShardRuns"
        >> ShardRuns(
            out_root=root,
            path_for=_path,
            writer=_write,
            records_per_shard=request.records_per_shard,
            temp_dir=runs,
            trace=request.trace_context,
        )
    )
    pinned = (
        pipeline
        | "ListSnapshot" >> beam.Create([snapshot.canonical])
        | "PinPolicySnapshot" >> beam.Map(lambda data: _write_json(root, SNAPSHOT_PATH, json.loads(data)))
    )
    totals = found["counts"] | "SummarizeFindings" >> beam.Map(
        lambda counts, at: _summary(snapshot, counts, at), at=beam.pvalue.AsSingleton(as_of)
    )
    summarized = totals | "WriteFindingsSummary" >> beam.Map(
        lambda value: _write_json(root, SUMMARY_PATH, value)
    )
    fields = totals | "PolicyManifestFields" >> beam.Map(lambda value: {"policy": value})
    return (
        (shards, pinned, summarized)
        | "CollectEntries" >> beam.Flatten()
        | "AssembleBundle" >> AssembleBundle(root, request, summary, fields=fields)
    )
