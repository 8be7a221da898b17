"""mirror:full and mirror:delta compiled to Beam pipelines.

mirror:full::

    ReadLedger -> SelectRecords -> AdaptRows(mirror_row_items) -> WriteSortedShards -> AssembleBundle
                               \\-> SummarizeMirror (counts, high water, record-set digest) --/

On the row read path, as json:raw: ``mirror_row_items`` yields each ledger row's json:raw
line (the same bytes json:raw writes) and its index rows, so the raw shards and the
Parquet indexes come out of one external sort.

mirror:delta::

    ReadLedger(segments the base did not read) -> SelectRecords ------------------\\
    ReadLedger(the base's segments) -> ReselectBaseRecords (only if the selection  -> carried -> DigestRecords
        changed, or no --as-of dates the bundle)  -> leaving keys, high-water mark        |
    the base's record index (Parquet) + its chain's change lists --> DiffAgainstBase (CoGroupByKey) -> WriteChanges
    carried -> KeepChangedRecords -> AdaptRows(row_items) -> WriteSortedShards

The ledger is append-only and a mirror manifest names the segments it read and its
selectors, so every ledger segment is read at most once, and only records that may have
changed are hashed: those of new segments, and those whose selection changed. The delta
reads rows, as mirror:full does (no LedgerRecord built): a base record that stays
selected, nearly all of them, costs its decoding and two selector matches, nothing more. The
base's side is its signed record index (plus the change lists of the deltas between it
and the full), looked up for those keys only; the delta's counts and record set are the
base's plus the changes (:func:`transforms.mirror.delta_summary`). The base is read on
the driver only (a folder or ``.tar.zst`` on its disk): the members the lookup needs are
checked against their signed digests and staged under the run's staging location
(``<staging>/<run>/.runs/base/``, :func:`stella.adapters.mirror.base.stage_chain`), which
is all a worker opens, so a delta runs on workers of other hosts (Dask, Flink, Dataflow).
A base whose segments are gone, or whose chain back to a full is not in ``--out``, fails
with ``ERR_EXPORT_BASE_MISSING``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import apache_beam as beam

from stella import storage
from stella.adapters.jsonraw import row_items
from stella.adapters.mirror.base import BaseBundle, stage_chain
from stella.adapters.mirror.delta import CHANGES_PATH
from stella.adapters.mirror.indexes import INDEX_GROUP, RECORDS, is_record_index
from stella.adapters.mirror.items import mirror_row_items, mirror_shard_path, write_mirror_shard
from stella.adapters.mirror.records import RecordSet
from stella.bundle.assemble import generated_at
from stella.bundle.manifest import MANIFEST_MAX_BYTES, ContentEntry, parse_manifest
from stella.bundle.request import ExportRequest
from stella.errors import BaseMissingError, UsageError
from stella.guards.ids import check_id
from stella.ledger.store import SegmentInfo
from stella.model import Kind
from stella.profiles import ProfileOption
from stella.selectors import Selectors, parse_selectors
from stella.timefmt import format_time, parse_duration
from transforms.bundle import AssembleBundle
from transforms.coders import RowBatch
from transforms.ledger import ReadLedger, SelectRecords, SummarizeRecords
from transforms.mirror import (
    DiffAgainstBase,
    DigestRecords,
    KeepChangedRecords,
    MirrorSummary,
    ReselectBaseRecords,
    SummarizeMirror,
    WriteChanges,
    count_ops,
    delta_summary,
)
from transforms.shards import RUNS_DIR, AdaptRows, WriteSortedShards

__all__ = [
    "BASE_OPTION",
    "DEFAULT_EXPIRES",
    "MIRROR_OPTIONS",
    "MirrorBase",
    "MirrorOptions",
    "build_delta",
    "build_full",
    "parse_mirror_options",
    "resolve_base",
]

DEFAULT_EXPIRES: Final = "30d"
DEFAULT_NAME: Final = "default"
_MAX_SEQUENCE: Final = 2**53
BASE_DIR: Final = "base"
"""Where a delta's base members are staged for workers, under the run's ``RUNS_DIR`` (never in the bundle)."""


MIRROR_OPTIONS: Final = (
    ProfileOption(
        "name", "mirror name (a-z, 0-9, '.', '_', '-')", DEFAULT_NAME, "which mirror of the tenant this feeds"
    ),
    ProfileOption(
        "sequence",
        "positive integer",
        "1 (full), base + 1 (delta)",
        "strictly increasing per tenant and mirror name; the importer refuses anything not above its state",
    ),
    ProfileOption(
        "expires",
        "duration (36h, 7d, 1d12h)",
        f"generatedAt + {DEFAULT_EXPIRES}",
        "after this the importer refuses the bundle (freeze protection)",
    ),
)
BASE_OPTION: Final = ProfileOption(
    "base",
    "bundle path or export id",
    "(required)",
    "the mirror export this delta applies to; an id is looked up in --out",
)


@dataclass(frozen=True)
class MirrorOptions:
    name: str
    sequence: int | None
    expires: str
    base: str | None


def parse_mirror_options(options: Mapping[str, Any], *, delta: bool) -> MirrorOptions:
    """Raises UsageError: a bad name, sequence or expiry, or a delta without ``base``."""
    name = check_id(options.get("name", DEFAULT_NAME), "mirror name")
    sequence = options.get("sequence")
    if sequence is not None:
        if not str(sequence).isdigit() or not 1 <= int(sequence) < _MAX_SEQUENCE:
            raise UsageError(f"sequence={sequence!r}: a positive integer")
        sequence = int(sequence)
    expires = str(options.get("expires", DEFAULT_EXPIRES))
    period = parse_duration(expires)
    if period is None or period.total_seconds() <= 0:
        raise UsageError(f"expires={expires!r}: a validity period such as 7d, 36h or 1d12h")
    base = options.get("base")
    if delta and not base:
        raise UsageError("mirror:delta needs --option base=PATH|EXPORT_ID (the export it is a delta against)")
    return MirrorOptions(name, sequence, expires, None if base is None else str(base))


@dataclass(frozen=True)
class MirrorBase:
    """The base of a delta, as its signed manifest describes it."""

    export_id: str
    manifest_digest: str
    sequence: int
    selectors: Selectors
    segments: tuple[SegmentInfo, ...]
    record_set: RecordSet
    counts: Mapping[str, int]
    chain: tuple[BaseBundle, ...]
    """The full this base descends from, then each delta up to the base itself (on the driver's disk)."""


def _find_base(reference: str, out_dir: str) -> Path:
    candidates = [Path(reference)]
    if "/" not in reference and not reference.endswith(".tar.zst"):  # an export id, looked up in --out
        check_id(reference, "base export id")
        candidates += [Path(out_dir) / reference, Path(out_dir) / f"{reference}.tar.zst"]
    for candidate in candidates:
        if candidate.is_dir() or candidate.is_file():
            return candidate
    raise BaseMissingError(
        f"base {reference!r} is neither a bundle path nor an export in {out_dir}; republish the base "
        "or export mirror:full instead",
        details={"base": reference},
    )


def _base_manifest(path: Path) -> bytes:
    """The base's ``export.json`` bytes (parse_manifest bounds and checks them)."""
    from stella.bundle.verify import iter_members

    if path.is_dir() and (path / "export.json").is_file():
        with (path / "export.json").open("rb") as handle:
            return handle.read(MANIFEST_MAX_BYTES + 1)
    if path.is_file():
        for relative, stream in iter_members(path):
            if relative == "export.json":
                return stream.read(MANIFEST_MAX_BYTES + 1)
    raise BaseMissingError(f"base {path} has no export.json: not a bundle", details={"base": str(path)})


def resolve_base(request: ExportRequest, options: MirrorOptions) -> MirrorBase:
    """Read and check the base's manifest; match its segments against the ledger.

    Only ``export.json`` is read: the payload is not needed, and what the manifest claims
    about it (the record set) is checked against the ledger's reconstruction in the
    pipeline, which is cheaper than re-hashing a whole full bundle and proves more.

    Raises:
        BaseMissingError: no such base, or a segment it was built from is no longer in
            the ledger (or has other bytes).
        UsageError: the base is not a mirror export of this tenant and mirror name.
        BundleIntegrityError: the base has no readable manifest.
    """
    from stella.canonical import sha256_digest

    assert options.base is not None
    path = _find_base(options.base, request.out_dir)
    manifest_bytes = _base_manifest(path)
    manifest, _entries = parse_manifest(manifest_bytes)
    mirror = manifest.get("mirror")
    if manifest.get("profile", {}).get("kind") != "mirror" or not isinstance(mirror, dict):
        raise UsageError(f"base {path} is a {manifest.get('profile', {}).get('name')} export, not a mirror")
    if manifest["tenant"] != request.tenant or mirror.get("name") != options.name:
        raise UsageError(
            f"base {path} is mirror {mirror.get('name')!r} of tenant {manifest['tenant']!r}, "
            f"not {options.name!r} of {request.tenant!r}"
        )
    ledger = {s.name: s for s in request.segments}
    segments = []
    for entry in mirror["ledger"]:
        found = ledger.get(entry["name"])
        if found is None or found.digest != entry["digest"]:
            raise BaseMissingError(
                f"the ledger no longer holds segment {entry['name']} that base {manifest['exportId']} was "
                "built from; export mirror:full instead",
                details={"base": manifest["exportId"], "segment": entry["name"]},
            )
        segments.append(found)
    record_set = mirror["recordSet"]
    return MirrorBase(
        export_id=str(manifest["exportId"]),
        manifest_digest=sha256_digest(manifest_bytes),
        sequence=int(mirror["sequence"]),
        selectors=parse_selectors(
            [f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in manifest["selectors"].items()]
        ),
        segments=tuple(segments),
        record_set=RecordSet(int(record_set["digest"], 16), int(record_set["records"])),
        counts={str(k): int(v) for k, v in manifest["counts"].items()},
        chain=_chain(path, manifest_bytes, request.out_dir),
    )


_MAX_CHAIN: Final = 100_000


def _chain(path: Path, manifest_bytes: bytes, out_dir: str) -> tuple[BaseBundle, ...]:
    """The base back to its full: each delta names its base by export id and manifest digest.

    Raises:
        BaseMissingError: a bundle of the chain is not in ``--out`` (nor beside the base),
            or is not the one the next delta was built on.
    """
    from stella.canonical import sha256_digest

    links: list[BaseBundle] = []
    while len(links) < _MAX_CHAIN:
        manifest, entries = parse_manifest(manifest_bytes)
        mirror, export_id = manifest["mirror"], str(manifest["exportId"])
        if mirror.get("mode") == "full":
            files = {str(e["path"]): str(e["digest"]) for e in mirror["recordIndex"]}
            links.append(BaseBundle(path, export_id, files, full=True))
            return tuple(reversed(links))
        digests = {e.path: e.digest for e in entries}
        links.append(BaseBundle(path, export_id, {CHANGES_PATH: digests[CHANGES_PATH]}, full=False))
        delta = manifest["delta"]
        parent = str(delta["baseExportId"])
        try:
            path = _find_base(parent, out_dir)
        except BaseMissingError:
            path = _find_base(str(path.parent / parent), out_dir)
        manifest_bytes = _base_manifest(path)
        if sha256_digest(manifest_bytes) != delta["baseManifestDigest"]:
            raise BaseMissingError(
                f"{path} is not the bundle delta {export_id} was built on (its manifest differs); "
                "export mirror:full instead",
                details={"base": parent},
            )
    raise BaseMissingError(f"the base chain of {path} is over {_MAX_CHAIN} bundles; export mirror:full")


def _mirror_block(
    request: ExportRequest, options: MirrorOptions, summary: MirrorSummary, sequence: int, mode: str
) -> dict[str, Any]:
    generated = datetime.fromisoformat(generated_at(request, summary.high_water).replace("Z", "+00:00"))
    period = parse_duration(options.expires)
    assert period is not None
    return {
        "name": options.name,
        "mode": mode,
        "sequence": sequence,
        "expires": format_time(generated + period),
        "recordSet": summary.record_set.to_json(),
        "ledger": [
            {"name": s.name, "digest": s.digest} for s in sorted(request.segments, key=lambda s: s.name)
        ],
    }


def _read_selected(pipeline: beam.Pipeline, request: ExportRequest) -> beam.PCollection:
    """The selected ledger rows (the row read path: no LedgerRecord built, see json:raw)."""
    return (
        pipeline
        | "ReadLedger"
        >> ReadLedger([s.path for s in request.segments], trace=request.trace_context, rows=True)
        | "SelectRecords" >> SelectRecords(request.selectors, rows=True)
    )


def _write_shards(
    staging: str, request: ExportRequest, max_items: Mapping[str, int] | None = None
) -> WriteSortedShards:
    return WriteSortedShards(
        temp_dir=storage.join(staging, RUNS_DIR),
        out_root=staging,
        path_for=mirror_shard_path,
        writer=write_mirror_shard,
        records_per_shard=request.records_per_shard,
        trace=request.trace_context,
        max_items=max_items,
    )


def _record_group_bounds(request: ExportRequest) -> dict[str, int]:
    """mirror:full's groups of one item per selected record, each bounded by the segments' record count.

    The raw lines (one group per kind) and the record index; the other indexes have a
    row per package, alias or product, so no bound (see ``WriteSortedShards``).
    """
    records = sum(segment.records for segment in request.segments)
    return {**{kind.value: records for kind in Kind}, INDEX_GROUP + RECORDS: records}


def build_full(pipeline: beam.Pipeline, request: ExportRequest, staging: str) -> beam.PCollection:
    options = parse_mirror_options(request.options, delta=False)
    sequence = options.sequence or 1
    selected = _read_selected(pipeline, request)
    summary = selected | "SummarizeMirror" >> SummarizeMirror()
    entries = (
        selected
        | "AdaptRows" >> AdaptRows(mirror_row_items, request.trace_context)
        | "WriteSortedShards" >> _write_shards(staging, request, _record_group_bounds(request))
    )

    def fields(contents: list[ContentEntry], summary: MirrorSummary) -> dict[str, Any]:
        block = _mirror_block(request, options, summary, sequence, "full")
        block["recordIndex"] = [
            {"path": c.path, "digest": c.digest} for c in sorted(contents) if is_record_index(c.path)
        ]
        return {"mirror": block}

    manifest_fields = (
        entries
        | "CollectEntries" >> beam.combiners.ToList()
        | "MirrorFields" >> beam.Map(fields, summary=beam.pvalue.AsSingleton(summary))
    )
    return entries | "AssembleBundle" >> AssembleBundle(staging, request, summary, fields=manifest_fields)


def build_delta(pipeline: beam.Pipeline, request: ExportRequest, staging: str) -> beam.PCollection:
    options = parse_mirror_options(request.options, delta=True)
    base = resolve_base(request, options)
    sequence = options.sequence or base.sequence + 1
    if sequence <= base.sequence:
        raise UsageError(f"sequence={sequence} must be above the base's sequence {base.sequence}")
    # The manifest names the base by id, never by a path of this machine; and what the
    # steps capture (shipped to workers) holds no such path either: no MirrorBase, no reference.
    request = dataclasses.replace(request, options={**request.options, "base": base.export_id})
    options = dataclasses.replace(options, base=base.export_id)
    base_counts, base_set = base.counts, base.record_set
    base_block = {
        "baseExportId": base.export_id,
        "baseManifestDigest": base.manifest_digest,
        "baseSequence": base.sequence,
    }
    covered = {s.name for s in base.segments}
    trace = request.trace_context
    new = (
        pipeline
        | "ReadNewSegments"
        >> ReadLedger([s.path for s in request.segments if s.name not in covered], trace=trace, rows=True)
        | "SelectRecords" >> SelectRecords(request.selectors, rows=True)
    )
    # The base's segments give exactly the base's records, unless the selection changed.
    # They are also read when no --as-of dates the bundle: its high-water mark is then
    # that of every selected record, and only the ledger has their times.
    if base.selectors != request.selectors or not request.as_of:
        split = (
            pipeline
            | "ReadBaseSegments" >> ReadLedger([s.path for s in base.segments], trace=trace, rows=True)
            | "ReselectBaseRecords" >> ReselectBaseRecords(base.selectors, request.selectors)
        )
        entering = split | "Entering" >> beam.FlatMap(
            lambda r: [r.entering] if r.entering else []
        ).with_output_types(RowBatch)
        carried = (new, entering) | "FlattenCarried" >> beam.Flatten()
        leaving = split | "Leaving" >> beam.FlatMap(lambda r: [r.leaving] if r.leaving else [])
        highs = split | "HighWater" >> beam.FlatMap(lambda r: [r.high] if r.high else []).with_output_types(
            str
        )
    else:
        carried = new
        leaving = pipeline | "NoneLeaving" >> beam.Create([]).with_output_types(list[bytes])
        highs = pipeline | "NoBaseHighWater" >> beam.Create([]).with_output_types(str)
    # Workers never open the base on the driver's disk: the members they read are staged.
    chain = stage_chain(base.chain, storage.join(staging, RUNS_DIR, BASE_DIR))
    changes = (carried | "DigestRecords" >> DigestRecords(), leaving) | "DiffAgainstBase" >> DiffAgainstBase(
        chain
    )
    # Collected once: the change list, the payload's filter, the summary and the counts all read it.
    collected = changes | "CollectChanges" >> beam.combiners.ToList()
    changes_entry = collected | "WriteChanges" >> WriteChanges(staging)
    raw_entries = (
        carried
        | "KeepChangedRecords" >> KeepChangedRecords(collected)
        | "AdaptRows" >> AdaptRows(row_items, trace)
        | "WriteSortedShards" >> _write_shards(staging, request)
    )
    summary = (
        carried
        | "SummarizeCarried" >> SummarizeRecords(rows=True)
        | "SummarizeDelta"
        >> beam.Map(
            lambda carried, changes, highs: delta_summary(carried, changes, base_counts, base_set, highs),
            changes=beam.pvalue.AsSingleton(collected),
            highs=beam.pvalue.AsList(highs),
        ).with_output_types(MirrorSummary)
    )

    def fields(summary: MirrorSummary, ops: dict[str, int]) -> dict[str, Any]:
        return {
            "mirror": _mirror_block(request, options, summary, sequence, "delta"),
            "delta": {**base_block, "changes": CHANGES_PATH, **ops},
        }

    ops = collected | "CountOps" >> beam.Map(count_ops)
    manifest_fields = summary | "DeltaFields" >> beam.Map(fields, ops=beam.pvalue.AsSingleton(ops))
    entries = (raw_entries, changes_entry) | "FlattenEntries" >> beam.Flatten()
    return entries | "AssembleBundle" >> AssembleBundle(staging, request, summary, fields=manifest_fields)
