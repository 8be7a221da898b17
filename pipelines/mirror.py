"""mirror:full and mirror:delta compiled to Beam pipelines.

mirror:full::

    ReadLedger -> SelectRecords -> AdaptRecords(mirror_items, request.trace_context) -> WriteSortedShards -> AssembleBundle
                               \\-> SummarizeMirror (counts, high water, record-set digest) --/

``mirror_items`` yields each record's json:raw line (same bytes as json:raw) and its
index rows, so the raw shards and the Parquet indexes come out of one external sort.

mirror:delta::

    ReadLedger(current) -> SelectRecords --------------------\\
    ReadLedger(base segments) -> SelectRecords(base selectors) -> DiffAgainstBase -> WriteChanges
                                                   KeepChangedRecords -> AdaptRecords(jsonraw) -> WriteSortedShards

The base is reconstructed from the ledger: a mirror manifest names the ledger segments
it read and its selectors, and the ledger is append-only, so the base's records are
those segments filtered by those selectors. A base whose segments are gone fails with
``ERR_EXPORT_BASE_MISSING``, as does a reconstruction whose record-set digest differs
from the one the base manifest signed.
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
from stella.adapters.jsonraw import jsonraw_items
from stella.adapters.mirror.delta import CHANGES_PATH
from stella.adapters.mirror.indexes import is_record_index
from stella.adapters.mirror.items import mirror_items, mirror_shard_path, write_mirror_shard
from stella.bundle.assemble import generated_at
from stella.bundle.manifest import MANIFEST_MAX_BYTES, ContentEntry, parse_manifest
from stella.bundle.request import ExportRequest
from stella.errors import BaseMissingError, UsageError
from stella.guards.ids import check_id
from stella.ledger.store import SegmentInfo
from stella.profiles import ProfileOption
from stella.selectors import Selectors, parse_selectors
from stella.timefmt import format_time, parse_duration
from transforms.bundle import AssembleBundle
from transforms.ledger import ReadLedger, SelectRecords
from transforms.mirror import (
    DiffAgainstBase,
    KeepChangedRecords,
    MirrorSummary,
    SummarizeMirror,
    WriteChanges,
    count_ops,
)
from transforms.shards import RUNS_DIR, AdaptRecords, WriteSortedShards

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
    record_set: Mapping[str, Any]


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
    return MirrorBase(
        export_id=str(manifest["exportId"]),
        manifest_digest=sha256_digest(manifest_bytes),
        sequence=int(mirror["sequence"]),
        selectors=parse_selectors(
            [f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in manifest["selectors"].items()]
        ),
        segments=tuple(segments),
        record_set=mirror["recordSet"],
    )


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
    return (
        pipeline
        | "ReadLedger" >> ReadLedger([s.path for s in request.segments], trace=request.trace_context)
        | "SelectRecords" >> SelectRecords(request.selectors)
    )


def _write_shards(staging: str, request: ExportRequest) -> WriteSortedShards:
    return WriteSortedShards(
        temp_dir=storage.join(staging, RUNS_DIR),
        out_root=staging,
        path_for=mirror_shard_path,
        writer=write_mirror_shard,
        records_per_shard=request.records_per_shard,
        trace=request.trace_context,
    )


def build_full(pipeline: beam.Pipeline, request: ExportRequest, staging: str) -> beam.PCollection:
    options = parse_mirror_options(request.options, delta=False)
    sequence = options.sequence or 1
    selected = _read_selected(pipeline, request)
    summary = selected | "SummarizeMirror" >> SummarizeMirror()
    entries = (
        selected
        | "AdaptRecords" >> AdaptRecords(mirror_items)
        | "WriteSortedShards" >> _write_shards(staging, request)
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
    # The manifest names the base by id, never by a path of this machine.
    request = dataclasses.replace(request, options={**request.options, "base": base.export_id})
    current = _read_selected(pipeline, request)
    previous = (
        pipeline
        | "ReadBaseLedger" >> ReadLedger([s.path for s in base.segments], trace=request.trace_context)
        | "SelectBaseRecords" >> SelectRecords(base.selectors)
    )
    summary = current | "SummarizeMirror" >> SummarizeMirror()
    base_set = previous | "SummarizeBase" >> SummarizeMirror()
    changes = (current, previous) | "DiffAgainstBase" >> DiffAgainstBase()
    changes_entry = changes | "WriteChanges" >> WriteChanges(staging)
    # The carried records are read again rather than taken from ``current``: KeepChangedRecords
    # waits for the join's side input, and a fanned-out ``current`` would be buffered whole
    # (every document) until then; a second read streams in bounded memory.
    raw_entries = (
        pipeline
        | "ReadCarriedLedger" >> ReadLedger([s.path for s in request.segments])
        | "SelectCarriedRecords" >> SelectRecords(request.selectors)
        | "KeepChangedRecords" >> KeepChangedRecords(changes)
        | "AdaptRecords" >> AdaptRecords(jsonraw_items, request.trace_context)
        | "WriteSortedShards" >> _write_shards(staging, request)
    )

    def check_base(summary: MirrorSummary) -> MirrorSummary:
        if summary.record_set.to_json() != dict(base.record_set):
            raise BaseMissingError(
                f"the ledger no longer reconstructs base {base.export_id} (its record set differs); "
                "export mirror:full instead",
                details={"base": base.export_id},
            )
        return summary

    checked = base_set | "CheckBaseRecordSet" >> beam.Map(check_base)

    def fields(summary: MirrorSummary, ops: dict[str, int], _base: MirrorSummary) -> dict[str, Any]:
        return {
            "mirror": _mirror_block(request, options, summary, sequence, "delta"),
            "delta": {
                "baseExportId": base.export_id,
                "baseManifestDigest": base.manifest_digest,
                "baseSequence": base.sequence,
                "changes": CHANGES_PATH,
                **ops,
            },
        }

    ops = changes | "CollectOps" >> beam.combiners.ToList() | "CountOps" >> beam.Map(count_ops)
    manifest_fields = summary | "DeltaFields" >> beam.Map(
        fields, ops=beam.pvalue.AsSingleton(ops), _base=beam.pvalue.AsSingleton(checked)
    )
    entries = (raw_entries, changes_entry) | "FlattenEntries" >> beam.Flatten()
    return entries | "AssembleBundle" >> AssembleBundle(staging, request, summary, fields=manifest_fields)
