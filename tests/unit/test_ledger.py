"""Ledger ingestion: all of ../shared/data, idempotence, quarantine, deterministic segments."""

from __future__ import annotations

import json
from collections import Counter
from io import BytesIO
from pathlib import Path

import fastavro
import pytest
import zstandard
from backports import zstd

from stella.errors import InputError
from stella.ledger.ingest import ingest_paths
from stella.ledger.store import LedgerStore, _zstd_avro_block, read_rows, read_segment
from tests.support import check_cli_json

T0 = "2026-11-27T00:00:00Z"


def _shared_paths(shared_data: Path) -> list[str]:
    return [str(shared_data / "advisories"), str(shared_data / "sboms"), str(shared_data / "vex")]


def test_ingest_all_shared_data_then_reingest_adds_nothing(tmp_path: Path, shared_data: Path) -> None:
    store = LedgerStore(str(tmp_path / "ledger"))
    report = ingest_paths(store, "acme", [str(shared_data)], ingested_at=T0)
    summary = report.to_json()
    # 9689 OSV records + 58 JSON documents; MANIFEST.json is JSON but not evidence.
    assert summary["byKind"]["advisory"]["osv"]["added"] == 9689
    assert summary["byKind"]["advisory"]["csaf"]["added"] == 1
    assert summary["byKind"]["sbom"] == {
        "cyclonedx": {"added": 9, "duplicates": 0},
        "spdx": {"added": 4, "duplicates": 0},
    }
    assert summary["byKind"]["vex"] == {
        "csaf": {"added": 21, "duplicates": 0},
        "cyclonedx-vex": {"added": 13, "duplicates": 0},
        "openvex": {"added": 7, "duplicates": 0},
    }
    assert summary["added"] == 9744
    assert [r["source"] for r in summary["rejections"]] == ["data/MANIFEST.json"]
    assert "unrecognised document format" in summary["rejections"][0]["reason"]
    assert "data/README.md" in summary["skippedFiles"]
    again = ingest_paths(store, "acme", [str(shared_data)], ingested_at="2026-12-01T00:00:00Z")
    assert again.total_added == 0 and again.total_duplicates == 9744 and not again.segments
    # known bytes skip canonicalisation but are still counted by the kind and format they have
    assert {
        kind: {fmt: {"added": 0, "duplicates": n["added"]} for fmt, n in formats.items()}
        for kind, formats in summary["byKind"].items()
    } == again.to_json()["byKind"]
    assert sum(s.records for s in store.segments("acme")) == 9744
    # nothing of another tenant leaks in
    assert store.segments("other") == []


def test_known_bytes_the_fast_parse_refuses_are_still_duplicates(tmp_path: Path) -> None:
    # A byte-order mark is stripped by canonicalisation but refused by the fast parse
    # that identifies known bytes: the full path then decides, as it did the first time.
    document = tmp_path / "bom.json"
    osv = {"id": "PYSEC-0000-1", "modified": "2024-01-01T00:00:00Z", "summary": "s"}
    document.write_bytes("\ufeff".encode() + json.dumps(osv).encode())
    store = LedgerStore(str(tmp_path / "ledger"))
    assert ingest_paths(store, "acme", [str(document)], ingested_at=T0).total_added == 1
    again = ingest_paths(store, "acme", [str(document)], ingested_at=T0)
    assert (again.total_added, again.duplicates) == (0, Counter({("advisory", "osv"): 1}))


def test_raw_documents_round_trip_as_json_values(tmp_path: Path, shared_data: Path) -> None:
    store = LedgerStore(str(tmp_path / "ledger"))
    ingest_paths(store, "acme", [str(shared_data / "vex"), str(shared_data / "sboms")], ingested_at=T0)
    stored = {r.source: r for r in store.read("acme")}
    for source, record in stored.items():
        folder, _, rest = source.partition("/")
        original = json.loads((shared_data / folder / rest).read_bytes())
        assert json.loads(record.document) == original, source


def test_bad_input_is_quarantined_and_the_rest_goes_on(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    good = {"id": "GOOD-1", "modified": "2024-01-01T00:00:00Z", "affected": [], "summary": "ok"}
    (inputs / "good.json").write_text(json.dumps(good))
    (inputs / "broken.json").write_text('{"id": "X", ')
    (inputs / "unknown.json").write_text('{"hello": "world"}')
    lines = [json.dumps({**good, "id": f"L-{i}"}) for i in range(3)]
    lines.insert(1, "not json at all")
    stream = zstandard.ZstdCompressor().compress(("\n".join(lines) + "\n").encode())
    (inputs / "feed.jsonl.zst").write_bytes(stream)
    store = LedgerStore(str(tmp_path / "ledger"))
    report = ingest_paths(store, "acme", [str(inputs)], ingested_at=T0)
    assert report.total_added == 4
    reasons = {r.source: r.reason for r in report.rejections}
    assert set(reasons) == {"in/broken.json", "in/unknown.json", "in/feed.jsonl.zst#2"}
    assert "invalid JSON at line 1" in reasons["in/broken.json"]
    quarantined = store.quarantined("acme")
    assert {q["source"] for q in quarantined} == set(reasons)
    for rejection in report.rejections:
        assert Path(rejection.quarantined).read_bytes()  # the bytes are kept


def test_a_modified_time_after_receipt_is_reported_and_not_trusted(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    base = {"affected": [], "summary": "s"}
    (inputs / "past.json").write_text(json.dumps({**base, "id": "P-1", "modified": "2026-11-26T23:59:59.5Z"}))
    (inputs / "typo.json").write_text(json.dumps({**base, "id": "F-1", "modified": "2027-07-09T15:45:00Z"}))
    store = LedgerStore(str(tmp_path / "ledger"))
    report = ingest_paths(store, "acme", [str(inputs)], ingested_at=T0)
    assert report.future_dated == [("in/typo.json", "F-1", "2027-07-09T15:45:00Z")]
    assert report.to_json()["modifiedAfterIngestion"][0]["id"] == "F-1"
    records = {r.upstream_id: r for s in store.segments("acme") for r in read_segment(s.path)}
    assert records["F-1"].modified == "2027-07-09T15:45:00Z"  # kept as received
    assert records["F-1"].high_water == T0  # but never dates a bundle after its receipt
    assert records["P-1"].high_water == "2026-11-26T23:59:59.500000Z"  # normalized at ingest
    assert not records["P-1"].modified_after_ingestion


def test_same_files_in_any_order_make_identical_segments(tmp_path: Path, shared_data: Path) -> None:
    paths = [
        str(shared_data / "vex"),
        str(shared_data / "sboms"),
        str(shared_data / "advisories" / "osv-psf.jsonl.zst"),
    ]
    a = LedgerStore(str(tmp_path / "a"))
    b = LedgerStore(str(tmp_path / "b"))
    ingest_paths(a, "acme", paths, ingested_at=T0)
    ingest_paths(b, "acme", list(reversed(paths)), ingested_at=T0)
    seg_a, seg_b = a.segments("acme"), b.segments("acme")
    assert [(s.name, s.digest) for s in seg_a] == [(s.name, s.digest) for s in seg_b]
    assert Path(seg_a[0].path).read_bytes() == Path(seg_b[0].path).read_bytes()


def test_segments_are_sorted_by_record_key(tmp_path: Path, shared_data: Path) -> None:
    store = LedgerStore(str(tmp_path / "ledger"))
    ingest_paths(
        store, "acme", [str(shared_data / "advisories" / "osv-ghsa-sample.jsonl.zst")], ingested_at=T0
    )
    records = list(read_segment(store.segments("acme")[0].path))
    assert [r.sort_key for r in records] == sorted(r.sort_key for r in records)
    assert Counter(r.kind.value for r in records) == {"advisory": 14}


def test_segment_bytes_do_not_depend_on_the_hash_seed(tmp_path: Path, shared_data: Path) -> None:
    """Processes with different PYTHONHASHSEED write the same segment (fastavro once made them differ)."""
    import os

    from tests.support import ingest

    digests = set()
    for seed in ("1", "2", "3"):
        root = tmp_path / seed
        ingest(root, shared_data / "vex" / "openvex", env={**os.environ, "PYTHONHASHSEED": seed})
        (segment,) = LedgerStore(str(root)).segments("acme")
        digests.add((segment.name, segment.digest))
    assert len(digests) == 1


def test_generate_is_idempotent_whatever_the_slicing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stella.ledger import generate

    store = LedgerStore(str(tmp_path / "ledger"))
    monkeypatch.setattr(generate, "SLICE_SIZE", 64)
    first = generate.generate_ledger(store, "gen", 300, seed=3, ingested_at=T0, workers=1)
    assert first.added == 300
    monkeypatch.setattr(generate, "SLICE_SIZE", 128)
    again = generate.generate_ledger(store, "gen", 400, seed=3, ingested_at=T0, workers=1)
    assert again.added == 100  # only documents 300..399 are new
    assert sum(s.records for s in store.segments("gen")) == 400


def test_one_writer_per_tenant(tmp_path: Path, shared_data: Path) -> None:
    import pytest

    from stella.errors import ConflictError

    store = LedgerStore(str(tmp_path / "ledger"))
    with store.writer_lock("acme"), pytest.raises(ConflictError, match="another ingest or generate"):
        ingest_paths(store, "acme", [str(shared_data / "vex" / "openvex")], ingested_at=T0)
    assert (
        ingest_paths(store, "acme", [str(shared_data / "vex" / "openvex")], ingested_at=T0).total_added == 7
    )


def test_stats_count_what_ingest_added(
    tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from stella.cli import main
    from stella.errors import NotFoundError
    from stella.ledger.stats import ledger_stats

    store = LedgerStore(str(tmp_path / "ledger"))
    (tmp_path / "unknown.json").write_text('{"not": "a document"}')
    report = ingest_paths(
        store, "acme", [str(shared_data / "vex"), str(tmp_path / "unknown.json")], ingested_at=T0
    )
    assert report.rejections
    stats = ledger_stats(store, "acme")
    assert stats.by_kind_format == {(kind, fmt): n for (kind, fmt), n in sorted(report.added.items()) if n}
    assert stats.records == report.total_added == sum(s.records for s in stats.segments)
    assert stats.quarantined == len(report.rejections)
    assert main(["ledger", "stats", "--tenant", "acme", "--ledger", store.root, "--json"]) == 0
    printed = check_cli_json(capsys.readouterr().out)
    assert printed["tenants"] == [json.loads(json.dumps(stats.to_json()))]
    with pytest.raises(NotFoundError):
        ledger_stats(store, "other")


def test_segment_blocks_read_as_fastavro_reads_them_and_damage_is_named(tmp_path: Path) -> None:
    # The shared-context zstd block reader (stella.ledger.store) must give fastavro's rows,
    # also for blocks it hands back to fastavro's path (several frames, no content size),
    # and a damaged block must still be an InputError naming the segment.
    assert fastavro.read.BLOCK_READERS["zstandard"] is _zstd_avro_block  # installed in fastavro's table
    schema = {"type": "record", "name": "R", "fields": [{"name": "document", "type": "bytes"}]}
    rows = [{"document": b'{"n":%d,"pad":"%s"}' % (i, b"x" * (i % 97))} for i in range(3000)]
    path = tmp_path / "s.avro"
    with path.open("wb") as handle:
        fastavro.writer(handle, schema, rows, codec="zstandard", sync_interval=4096)
    assert [row for chunk in read_rows(str(path)) for row in chunk] == rows

    # Blocks of two frames, then of one frame without a content size: fastavro's path.
    raw = zstd.compress(b"abc")
    assert zstd.decompress(raw + raw) == b"abcabc"
    streamed = zstandard.ZstdCompressor(write_content_size=False).compressobj()
    unsized = streamed.compress(b"abc") + streamed.flush()
    for data, expected in ((raw + raw, b"abcabc"), (unsized, b"abc")):
        assert len(data) < 64  # its Avro length prefix is then one byte: the length, zigzagged
        block = BytesIO(bytes([len(data) << 1]) + data)
        assert _zstd_avro_block(block).read() == expected

    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2 : len(damaged) // 2 + 8] = b"\xff" * 8
    path.write_bytes(bytes(damaged))
    with pytest.raises(InputError, match="s.avro"):
        for _chunk in read_rows(str(path)):
            pass
