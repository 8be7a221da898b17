"""A resolved match becomes one finding: its JSON line, what the policy sees, its Parquet row.

One line per (SBOM, component, vulnerability). Everything in it is either stated by a
source (advisory ids, ranges, fixes, severities, VEX statements) or decided by the pinned
policy (the verdict and the rule), and each part says which; the raw records stay in
``data/raw`` untouched. Lines are canonical JSON, sorted by (SBOM, purl, vulnerability),
so the files are a function of the inputs only.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

from stella import storage
from stella.adapters.trivy.sortkeys import encode_parts
from stella.bundle.manifest import ContentEntry
from stella.bundle.parquet import PARQUET_CONTENT_TYPE, ROW_GROUP_ROWS, parquet_writer
from stella.canonical import dumps_plain
from stella.findings.match import Match
from stella.findings.vex import Resolution
from stella.policy.evaluate import FindingFacts, Verdict
from stella.sorting import SortItem
from stella.storage import HashingWriter

__all__ = [
    "FINDINGS_GROUP",
    "PARQUET_CONTENT_TYPE",
    "PARQUET_GROUP",
    "facts_of",
    "finding_items",
    "finding_line",
    "findings_path",
    "write_parquet_shard",
]

FINDINGS_GROUP = "policy.findings"
PARQUET_GROUP = "policy.parquet"


def facts_of(match: Match, resolution: Resolution) -> FindingFacts:
    aliases = sorted({i for a in match.affected for i in (*a.ids, *a.aliases)} - {match.vulnerability})
    published = sorted(a.published for a in match.affected if a.published)
    severity = [s for a in match.affected for s in a.severity]
    effective = resolution.effective
    return FindingFacts(
        vulnerability_id=match.vulnerability,
        aliases=tuple(aliases),
        ecosystem=match.component.ref.ecosystem,
        package=match.component.ref.name,
        purl=match.component.ref.purl,
        levels=tuple(s.level for s in severity if s.level),
        cvss_scores=tuple(s.score for s in severity if s.score is not None),
        fix_available=any(a.fixed for a in match.affected),
        vex_status=resolution.status,
        justification=effective.justification if effective else None,
        vex_conflict=bool(resolution.conflicts),
        published=published[0] if published else None,
    )


def finding_line(
    match: Match, resolution: Resolution, facts: FindingFacts, verdict: Verdict
) -> dict[str, Any]:
    component = match.component
    severity: list[dict[str, Any]] = []
    for advisory in match.affected:
        for entry in advisory.severity:
            if entry.to_json() not in severity:
                severity.append(entry.to_json())
    return {
        "sbom": {"id": component.sbom, "digest": component.sbom_digest},
        "component": {
            "purl": component.ref.purl,
            "name": component.name,
            "package": component.ref.name,
            "ecosystem": component.ref.ecosystem,
            "version": component.version,
            "bomRef": component.bom_ref,
        },
        "vulnerability": {
            "id": match.vulnerability,
            "aliases": list(facts.aliases),
            "published": facts.published,
        },
        "advisories": [
            {
                "id": a.advisory,
                "digest": a.digest,
                "modified": a.modified,
                "matched": list(matched),
                "fixed": list(a.fixed),
            }
            for a, matched in zip(match.affected, match.matched, strict=True)
        ],
        "fixedVersions": sorted({f for a in match.affected for f in a.fixed}),
        "severity": severity,
        "vex": {
            "status": resolution.status,
            "justification": facts.justification,
            "effective": resolution.effective.to_json() if resolution.effective else None,
            "statements": [s.to_json() for s in resolution.statements],
            "conflicts": [s.to_json() for s in resolution.conflicts],
        },
        "verdict": verdict.to_json(),
    }


def finding_items(match: Match, line: dict[str, Any]) -> list[SortItem]:
    """The same line twice: once for the JSON Lines shards, once for the Parquet ones."""
    key = encode_parts(part.encode() for part in match.ident)
    # Project-built keys (ASCII), strings, ints and one-decimal CVSS scores only: JCS is
    # plain sorted json.dumps here (see Severity.to_json), without dumps()'s safety walk.
    value = dumps_plain(line)
    return [(FINDINGS_GROUP, key, value), (PARQUET_GROUP, key, value)]


def findings_path(group: str, index: int, total: int) -> str:
    suffix = "jsonl.zst" if group == FINDINGS_GROUP else "parquet"
    folder = "findings" if group == FINDINGS_GROUP else "parquet"
    return f"data/policy/{folder}/part-{index:05d}-of-{total:05d}.{suffix}"


_SCHEMA = pa.schema(
    [
        ("sbom_id", pa.string()),
        ("sbom_digest", pa.string()),
        ("purl", pa.string()),
        ("component", pa.string()),
        ("ecosystem", pa.string()),
        ("version", pa.string()),
        ("vulnerability_id", pa.string()),
        ("aliases", pa.list_(pa.string())),
        ("advisory_ids", pa.list_(pa.string())),
        ("fixed_versions", pa.list_(pa.string())),
        ("severity_levels", pa.list_(pa.string())),
        ("cvss_scores", pa.list_(pa.float64())),
        ("vex_status", pa.string()),
        ("vex_justification", pa.string()),
        ("vex_conflict", pa.bool_()),
        ("vex_statements", pa.int32()),
        ("verdict", pa.string()),
        ("rule", pa.string()),
        ("exception", pa.string()),
        ("finding", pa.string()),
    ]
)


def _row(value: bytes) -> dict[str, Any]:
    line = json.loads(value)
    severity = line["severity"]
    return {
        "sbom_id": line["sbom"]["id"],
        "sbom_digest": line["sbom"]["digest"],
        "purl": line["component"]["purl"],
        "component": line["component"]["name"],
        "ecosystem": line["component"]["ecosystem"],
        "version": line["component"]["version"],
        "vulnerability_id": line["vulnerability"]["id"],
        "aliases": line["vulnerability"]["aliases"],
        "advisory_ids": [a["id"] for a in line["advisories"]],
        "fixed_versions": line["fixedVersions"],
        "severity_levels": [s["level"] for s in severity if s["level"]],
        "cvss_scores": [s["score"] for s in severity if s["score"] is not None],
        "vex_status": line["vex"]["status"],
        "vex_justification": line["vex"]["justification"],
        "vex_conflict": bool(line["vex"]["conflicts"]),
        "vex_statements": len(line["vex"]["statements"]),
        "verdict": line["verdict"]["value"],
        "rule": line["verdict"]["rule"],
        "exception": line["verdict"]["exception"],
        "finding": value.decode("utf-8"),
    }


_CONVERT_ROWS = 4096


def _table(values: list[bytes]) -> pa.Table:
    return pa.Table.from_pylist([_row(v) for v in values], schema=_SCHEMA)


def _row_group(values: Iterator[bytes]) -> list[pa.RecordBatch]:
    """Up to one row group of values as Arrow batches, converted a slice at a time so the
    Python row dicts of a whole row group never exist at once (Arrow's columns are ~3x smaller)."""
    batches: list[pa.RecordBatch] = []
    taken = 0
    while taken < ROW_GROUP_ROWS:
        chunk = list(itertools.islice(values, min(_CONVERT_ROWS, ROW_GROUP_ROWS - taken)))
        if not chunk:
            break
        batches.append(pa.RecordBatch.from_pylist([_row(v) for v in chunk], schema=_SCHEMA))
        taken += len(chunk)
    return batches


def write_parquet_shard(root: str, relative_path: str, values: Iterable[bytes]) -> ContentEntry:
    """One Parquet file of sorted finding lines, with fixed writer settings (reproducible bytes).

    Streamed a row group at a time: memory is one row group of rows, whatever the shard's
    size (the same bytes as one ``write_table`` with this ``row_group_size``).
    """
    rows = 0
    with storage.open_write(storage.join(root, relative_path)) as handle:
        sink = HashingWriter(handle)
        # Data page v2 and the Arrow schema embedded: see stella.bundle.parquet for why these two differ.
        with parquet_writer(sink, _SCHEMA, data_page_version="2.0", store_schema=True) as writer:
            iterator = iter(values)
            while batches := _row_group(iterator):
                table = pa.Table.from_batches(batches, schema=_SCHEMA)
                writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
                rows += table.num_rows
            if rows == 0:  # what write_table of an empty table writes: the schema and no rows
                writer.write_table(_table([]), row_group_size=ROW_GROUP_ROWS)
    return ContentEntry(
        path=relative_path,
        digest=sink.digest,
        bytes=sink.size,
        records=rows,
        content_type=PARQUET_CONTENT_TYPE,
    )
