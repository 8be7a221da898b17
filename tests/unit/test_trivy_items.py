"""trivy:db / trivy:java-db between adapter and writers: key order, revisions, merging, options.

These run the pure functions in memory (no Beam): items are sorted the way the external
sort sorts them, then fed to the same streaming merges the pipelines use.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.registry import get_profile
from stella.adapters.trivy.dbitems import (
    DB_GROUP,
    REVISIONS_GROUP,
    UNTRANSLATED_GROUP,
    merged_db_entries,
    superseded_lines,
    trivy_db_items,
    untranslated_lines,
)
from stella.adapters.trivy.javadb import JavaIndexRow
from stella.adapters.trivy.javaitems import ROWS_GROUP, conflict_items, java_db_items, java_rows
from stella.adapters.trivy.payload import TrivyOptions, parse_trivy_options
from stella.adapters.trivy.sortkeys import decode_parts, encode_parts
from stella.errors import UsageError
from stella.ledger.ingest import to_record
from stella.model import LedgerRecord
from stella.profiles import parse_profile_options
from stella.sorting import SortItem, merge_slices, write_run

T0 = "2026-01-01T00:00:00Z"


# --- order-preserving keys ---------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.lists(st.binary(max_size=6).map(lambda b: b.replace(b"\x02", b"\x00")), max_size=4), max_size=30
    )
)
def test_encoded_keys_sort_like_tuples_and_round_trip(tuples: list[list[bytes]]) -> None:
    as_tuples = [tuple(t) for t in tuples]
    assert sorted(as_tuples) == sorted(as_tuples, key=lambda t: encode_parts(t))
    for parts in as_tuples:
        assert decode_parts(encode_parts(parts)) == parts


def test_prefix_and_zero_bytes_order() -> None:
    cases = [(b"a", b"z"), (b"a\x00", b""), (b"a",), (b"a", b"z", b"q"), (b"ab",), (b"\x00",), (b"",)]
    assert sorted(cases) == sorted(cases, key=lambda t: encode_parts(t))
    with pytest.raises(ValueError):
        decode_parts(b"no-terminator")


# --- trivy.db items ------------------------------------------------------------------------


def _osv(record_id: str, modified: str, package: str, *, fixed: str = "2.0", **extra: Any) -> LedgerRecord:
    doc = {
        "id": record_id,
        "modified": modified,
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": package},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
            }
        ],
        **extra,
    }
    return to_record(json.dumps(doc).encode(), tenant="t1", source=f"test/{record_id}", ingested_at=T0)


def _sorted(items: Iterable[SortItem], group: str) -> list[tuple[bytes, bytes]]:
    return sorted((key, value) for g, key, value in items if g == group)


def _build(
    records: Iterable[LedgerRecord],
) -> tuple[dict[tuple[bytes, ...], Any], list[dict[str, Any]], list[str]]:
    items = [item for record in records for item in trivy_db_items(record)]
    superseded_found = list(superseded_lines(_sorted(items, REVISIONS_GROUP)))
    superseded = {digest for digest, _line in superseded_found}
    entries = list(merged_db_entries(_sorted(items, DB_GROUP), superseded))
    paths = [(*bucket, key) for bucket, key, _ in entries]
    assert paths == sorted(paths), "entries must come out in bbolt order"
    untranslated = [
        json.loads(line)["reason"]
        for line in untranslated_lines(_sorted(items, UNTRANSLATED_GROUP), superseded)
    ]
    db = {(*bucket, key): json.loads(value) for bucket, key, value in entries}
    return db, [json.loads(line) for _d, line in superseded_found], untranslated


def _packages(db: dict[tuple[bytes, ...], Any]) -> set[tuple[bytes, bytes]]:
    return {(path[1], path[2]) for path in db if len(path) == 3}


def test_latest_revision_wins_and_older_ones_are_not_unioned() -> None:
    old = _osv("PYSEC-1", "2024-01-01T00:00:00Z", "alpha", fixed="1.0", aliases=["CVE-2024-1"])
    new = _osv("PYSEC-1", "2024-06-01T00:00:00.5Z", "beta", fixed="3.0")  # alias dropped, package moved
    for order in ([old, new], [new, old]):
        db, superseded, _ = _build(order)
        assert _packages(db) == {(b"beta", b"PYSEC-1")}
        assert (b"vulnerability", b"CVE-2024-1") not in db
        assert [(s["id"], s["modified"], s["supersededBy"]["modified"]) for s in superseded] == [
            ("PYSEC-1", "2024-01-01T00:00:00Z", "2024-06-01T00:00:00.500000Z")
        ]


def test_withdrawn_latest_revision_removes_the_advisory() -> None:
    old = _osv("PYSEC-2", "2024-01-01T00:00:00Z", "alpha")
    withdrawn = _osv("PYSEC-2", "2024-02-01T00:00:00Z", "alpha", withdrawn="2024-02-01T00:00:00Z")
    db, superseded, untranslated = _build([old, withdrawn])
    assert db == {}
    assert len(superseded) == 1
    assert untranslated == ["withdrawn"]


def test_same_modified_tie_goes_to_the_larger_digest() -> None:
    a = _osv("PYSEC-3", "2024-01-01T00:00:00Z", "alpha", fixed="1.0")
    b = _osv("PYSEC-3", "2024-01-01T00:00:00Z", "alpha", fixed="9.0")
    winner = max(a, b, key=lambda r: r.digest)
    db, superseded, _ = _build([a, b])
    (value,) = (v for path, v in db.items() if path[-1] == b"PYSEC-3" and len(path) == 3)
    assert value["PatchedVersions"] == ["9.0" if winner is b else "1.0"]
    assert superseded[0]["supersededBy"]["digest"] == winner.digest


def test_a_record_stored_twice_is_one_revision() -> None:
    """Equal digests (two ledgers merged, a race between writers) must not supersede each other."""
    odd = [{"type": "Ubuntu", "score": "high"}, {"type": "Ubuntu", "score": "high"}]  # two equal problems
    record = _osv("PYSEC-5", "2024-01-01T00:00:00Z", "alpha", severity=odd)
    twice, superseded, untranslated = _build([record, record])
    once, _, untranslated_once = _build([record])
    assert twice == once != {}
    assert superseded == []
    assert untranslated == untranslated_once == ["unsupported-severity"] * 2


def test_different_advisories_for_one_bucket_key_are_merged() -> None:
    pysec = _osv("PYSEC-4", "2024-01-01T00:00:00Z", "alpha", fixed="1.0", aliases=["CVE-2024-4"])
    ghsa = _osv("PYSEC-5", "2024-01-02T00:00:00Z", "alpha", fixed="1.5", aliases=["CVE-2024-4"])
    db, superseded, _ = _build([pysec, ghsa])
    assert superseded == []
    (value,) = (v for path, v in db.items() if path[-1] == b"CVE-2024-4" and len(path) == 3)
    assert (
        value["VulnerableVersions"] == sorted(value["VulnerableVersions"])
        and len(value["VulnerableVersions"]) == 2
    )
    assert value["VendorIDs"] == ["PYSEC-4", "PYSEC-5"]
    assert (b"vulnerability", b"CVE-2024-4") in db  # one detail entry for both records
    reversed_db, _, _ = _build([ghsa, pysec])
    assert reversed_db == db


def test_a_keys_values_are_held_once_each_not_once_per_advisory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every advisory of an ecosystem gives the same ``data-source`` value: the merge keeps a
    key's distinct values (arrival order), so what it holds does not grow with the ledger."""
    import stella.adapters.trivy.dbitems as dbitems

    given: list[int] = []
    real = dbitems._combine

    def combine(path: tuple[bytes, ...], values: list[bytes]) -> bytes:
        given.append(len(values))
        return real(path, values)

    monkeypatch.setattr(dbitems, "_combine", combine)
    source = json.dumps({"ID": "ghsa", "Name": "GitHub"}, separators=(",", ":")).encode()
    key = encode_parts((b"data-source", b"pip::GitHub"))
    pairs = sorted((key, i.to_bytes(32, "big") + source) for i in range(5000))
    counts: Counter[str] = Counter()
    ((path, name, value),) = merged_db_entries(pairs, set(), counts)
    assert (path, name, value) == ((b"data-source",), b"pip::GitHub", source)
    assert given == [1] and counts["merged"] == 1
    other = json.dumps({"ID": "osv", "Name": "OSV"}, separators=(",", ":")).encode()
    pairs = sorted([*pairs, (key, (9999).to_bytes(32, "big") + other)])
    given.clear()
    (entry,) = merged_db_entries(pairs, {(7).to_bytes(32, "big")})
    assert given == [2]


# --- java-db items -------------------------------------------------------------------------


def _sbom(components: list[dict[str, Any]], serial: str) -> LedgerRecord:
    doc = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "serialNumber": serial,
        "components": components,
    }
    return to_record(json.dumps(doc).encode(), tenant="t1", source=serial, ingested_at=T0)


def test_java_rows_collapse_across_sboms_and_conflicts_are_reported() -> None:
    jar = {"alg": "SHA-1", "content": "aa" * 20}
    first = _sbom(
        [{"type": "library", "name": "x", "purl": "pkg:maven/org.a/x@1.0", "hashes": [jar]}], "urn:uuid:1"
    )
    second = _sbom(
        [
            {"type": "library", "name": "x", "purl": "pkg:maven/org.a/x@1.0", "hashes": [jar]},
            {"type": "library", "name": "y", "purl": "pkg:maven/org.b/y@2.0", "hashes": [jar]},
            {"type": "library", "name": "z", "purl": "pkg:npm/z@1.0"},
        ],
        "urn:uuid:2",
    )
    items = [item for record in (first, second) for item in java_db_items(record)]
    rows = list(java_rows(_sorted(items, ROWS_GROUP)))
    assert rows == [
        JavaIndexRow("org.a", "x", "1.0", bytes.fromhex("aa" * 20)),
        JavaIndexRow("org.b", "y", "2.0", bytes.fromhex("aa" * 20)),
    ]
    (conflict,) = conflict_items(rows[1:], rows)
    assert b"kept org.a:x:1.0" in conflict[2]
    assert sum(1 for g, _k, v in items if g != ROWS_GROUP and b"not-maven" in v) == 1


# --- bounded merge, options -------------------------------------------------------------------


def test_bounded_merge_equals_a_plain_sort(tmp_path: Path) -> None:
    items = [("g", f"k{i * 7919 % 1000:04d}".encode(), str(i).encode()) for i in range(1000)]
    slices = [
        piece for start in range(0, 1000, 50) for piece in write_run(str(tmp_path), items[start : start + 50])
    ]
    assert len(slices) > 8
    merged: Iterator[tuple[bytes, bytes]] = merge_slices(slices, temp_dir=str(tmp_path), fan_in=3)
    assert list(merged) == sorted((k, v) for _g, k, v in items)
    assert list(merge_slices([], temp_dir=str(tmp_path))) == []


def test_profile_options() -> None:
    trivy_db, json_raw = get_profile("trivy:db"), get_profile("json:raw")
    assert parse_profile_options(["next-update=48h"], trivy_db) == {"nextUpdate": "48h"}
    assert parse_profile_options([], json_raw) == {}
    for bad in (["next-update"], ["Next=1"], ["next-update=1d", "next-update=2d"], ["colour=red"]):
        with pytest.raises(UsageError):
            parse_profile_options(bad, trivy_db)
    with pytest.raises(UsageError, match="json:raw has no such option; its options: none"):
        parse_profile_options(["next-update=48h"], json_raw)
    updated = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_trivy_options({}).next_update_after(updated, timedelta(hours=24)) == updated + timedelta(
        hours=24
    )
    assert parse_trivy_options({"nextUpdate": "1d12h"}).next_update_after(
        updated, timedelta()
    ) == updated + timedelta(hours=36)
    absolute = parse_trivy_options({"nextUpdate": "2026-02-01T00:00:00Z"})
    assert absolute.next_update_after(updated, timedelta()) == datetime(2026, 2, 1, tzinfo=UTC)
    assert TrivyOptions().next_update is None
    for bad_options in ({"nextUpdate": "soon"}, {"nextUpdate": "99999d"}):
        with pytest.raises(UsageError):
            parse_trivy_options(bad_options)


def test_db_values_are_canonical_json_for_every_shared_advisory(shared_data: Path) -> None:
    """The fast value encoder must give RFC 8785 bytes for everything the adapter emits."""
    import zstandard

    from stella.canonical import dumps

    checked = 0
    for path in sorted((shared_data / "advisories").glob("*.jsonl.zst")):
        with path.open("rb") as handle:
            lines = zstandard.ZstdDecompressor().stream_reader(handle).read().splitlines()
        for line in lines:
            record = to_record(line, tenant="t1", source=path.name, ingested_at=T0)
            for group, _key, value in trivy_db_items(record):
                body = value[32:] if group != REVISIONS_GROUP else value
                assert body == dumps(json.loads(body)), (record.upstream_id, body[:200])
                checked += 1
    assert checked > 10_000
