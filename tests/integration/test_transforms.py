"""Each composite transform on its own, with TestPipeline and assert_that."""

from __future__ import annotations

import json
from pathlib import Path

import apache_beam as beam
import pytest
import zstandard
from apache_beam.testing.util import assert_that, equal_to

from pipelines.registry import get_profile
from stella.adapters.jsonraw import jsonraw_items, shard_path
from stella.bundle.request import ExportRequest
from stella.bundle.shards import write_jsonl_shard
from stella.ledger.ingest import ingest_paths
from stella.ledger.store import LedgerStore
from stella.selectors import parse_selectors
from tests.support import offline_test_pipeline
from transforms.bundle import AssembleBundle
from transforms.ledger import ReadLedger, RecordSummary, SelectRecords, SummarizeRecords
from transforms.shards import AdaptRecords, WriteSortedShards

T0 = "2026-11-27T00:00:00Z"


@pytest.fixture(scope="module")
def ghsa_ledger(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> LedgerStore:
    store = LedgerStore(str(tmp_path_factory.mktemp("ledger")))
    ingest_paths(
        store,
        "acme",
        [str(shared_data / "advisories" / "osv-ghsa-sample.jsonl.zst"), str(shared_data / "vex" / "openvex")],
        ingested_at=T0,
    )
    return store


def _ids(store: LedgerStore) -> list[str]:
    return sorted(r.upstream_id for r in store.read("acme"))


def test_read_ledger_emits_every_record_in_batches(ghsa_ledger: LedgerStore) -> None:
    with offline_test_pipeline() as p:
        batches = p | ReadLedger([s.path for s in ghsa_ledger.segments("acme")], batch_size=4)
        sizes = batches | beam.Map(len)
        ids = batches | beam.FlatMap(lambda b: [r.upstream_id for r in b])
        assert_that(ids, equal_to(_ids(ghsa_ledger)), label="AllIds")
        assert_that(sizes | beam.Filter(lambda n: n > 4), equal_to([]), label="BatchBound")


def test_select_records_applies_selectors(ghsa_ledger: LedgerStore) -> None:
    selectors = parse_selectors(["ecosystem=npm,PyPI"])
    expected = sorted(r.upstream_id for r in ghsa_ledger.read("acme") if selectors.matches(r))
    assert expected  # the sample has npm and PyPI advisories
    with offline_test_pipeline() as p:
        ids = (
            p
            | ReadLedger([s.path for s in ghsa_ledger.segments("acme")])
            | SelectRecords(selectors)
            | beam.FlatMap(lambda b: [r.upstream_id for r in b])
        )
        assert_that(ids, equal_to(expected))


def test_summarize_records_counts_and_high_water(ghsa_ledger: LedgerStore) -> None:
    records = list(ghsa_ledger.read("acme"))
    newest = max(records, key=lambda r: r.high_water).high_water
    with offline_test_pipeline() as p:
        summary = p | ReadLedger([s.path for s in ghsa_ledger.segments("acme")]) | SummarizeRecords()
        assert_that(summary, equal_to([RecordSummary({"advisory": 14, "vex": 7}, newest)]))


def test_summarize_empty_selection_still_yields_one_summary(ghsa_ledger: LedgerStore) -> None:
    with offline_test_pipeline() as p:
        summary = (
            p
            | ReadLedger([s.path for s in ghsa_ledger.segments("acme")])
            | SelectRecords(parse_selectors(["id=NOTHING-*"]))
            | SummarizeRecords()
        )
        assert_that(summary, equal_to([RecordSummary({}, None)]))


def test_adapt_records_runs_the_adapter_per_record(ghsa_ledger: LedgerStore) -> None:
    with offline_test_pipeline() as p:
        groups = (
            p
            | ReadLedger([s.path for s in ghsa_ledger.segments("acme")])
            | AdaptRecords(jsonraw_items)
            | beam.FlatMap(lambda items: [group for group, _k, _v in items])
        )
        assert_that(groups, equal_to(["advisory"] * 14 + ["vex"] * 7))


def test_write_sorted_shards_sorts_and_splits(tmp_path: Path) -> None:
    items = [("g", f"k{n:04d}".encode(), f"v{n}".encode()) for n in range(500)]
    batches = [items[i::7] for i in range(7)]  # scattered: no batch is sorted or complete
    with offline_test_pipeline() as p:
        entries = (
            p
            | beam.Create(batches)
            | WriteSortedShards(
                temp_dir=str(tmp_path / "runs"),
                out_root=str(tmp_path / "out"),
                path_for=lambda group, index, total: f"{group}-{index}-of-{total}.jsonl.zst",
                writer=lambda root, path, pairs: write_jsonl_shard(root, path, (v for _k, v in pairs)),
                records_per_shard=200,
            )
        )
        assert_that(
            entries | beam.Map(lambda e: (e.path, e.records is not None)),
            equal_to([(f"g-{i}-of-3.jsonl.zst", True) for i in range(3)]),
        )
    seen: list[bytes] = []
    for shard in sorted((tmp_path / "out").glob("*.zst")):
        lines = (
            zstandard.ZstdDecompressor().decompress(shard.read_bytes(), max_output_size=1 << 20).splitlines()
        )
        assert lines == sorted(lines, key=lambda v: int(v[1:]))  # sorted within the shard by key
        seen.extend(lines)
    assert sorted(seen) == sorted(v for _g, _k, v in items)


def test_assemble_bundle_writes_manifest_after_contents(tmp_path: Path, ghsa_ledger: LedgerStore) -> None:
    request = ExportRequest(
        tenant="acme",
        profile=get_profile("json:raw"),
        selectors=parse_selectors([]),
        ledger_root=ghsa_ledger.root,
        segments=tuple(ghsa_ledger.segments("acme")),
        out_dir=str(tmp_path),
    )
    with offline_test_pipeline() as p:
        batches = p | ReadLedger([s.path for s in request.segments])
        summary = batches | SummarizeRecords()
        export_id = (
            batches
            | AdaptRecords(jsonraw_items)
            | WriteSortedShards(
                temp_dir=str(tmp_path / "runs"),
                out_root=str(tmp_path),
                path_for=shard_path,
                writer=lambda root, path, pairs: write_jsonl_shard(root, path, (v for _k, v in pairs)),
                records_per_shard=10,
            )
            | AssembleBundle(str(tmp_path), request, summary)
        )
        assert_that(export_id | beam.Map(lambda i: i.startswith("acme-json-raw-")), equal_to([True]))
    manifest = json.loads((tmp_path / "export.json").read_bytes())
    assert manifest["counts"] == {"advisory": 14, "vex": 7}
    assert [c["path"] for c in manifest["contents"]] == [
        "data/raw/advisories/part-00000-of-00002.jsonl.zst",
        "data/raw/advisories/part-00001-of-00002.jsonl.zst",
        "data/raw/vex/part-00000-of-00001.jsonl.zst",
    ]
    assert sum(c["records"] for c in manifest["contents"]) == 21


def test_keep_records_applies_the_profile_input_filter(ghsa_ledger: LedgerStore) -> None:
    from stella.model import Kind
    from transforms.ledger import KeepRecords

    with offline_test_pipeline() as p:
        kinds = (
            p
            | ReadLedger([s.path for s in ghsa_ledger.segments("acme")])
            | KeepRecords(lambda r: r.kind is Kind.VEX)
            | beam.FlatMap(lambda b: [r.kind.value for r in b])
        )
        assert_that(kinds, equal_to(["vex"] * 7))


def _write_sorted(
    tmp_path: Path, name: str, batches: list[list[tuple[str, bytes, bytes]]], **extra: object
) -> None:
    with offline_test_pipeline() as p:
        _ = (
            p
            | beam.Create(batches)
            | WriteSortedShards(
                temp_dir=str(tmp_path / name / "runs"),
                out_root=str(tmp_path / name / "out"),
                path_for=lambda group, index, total: f"{group}-{index}-of-{total}.jsonl.zst",
                writer=lambda root, path, pairs: write_jsonl_shard(root, path, (v for _k, v in pairs)),
                records_per_shard=150,
                **extra,
            )
        )


def test_a_known_bound_on_group_sizes_gives_the_same_shards_from_fewer_slices(tmp_path: Path) -> None:
    # sorted batches, as a ledger segment gives them; 500 in "a" (4 shards), 100 in "b" (1)
    items = sorted(
        [("a", b"k%04d" % n, b"a%d" % n) for n in range(500)]
        + [("b", b"k%04d" % n, b"b%d" % n) for n in range(100)]
    )
    batches = [items[start : start + 90] for start in range(0, len(items), 90)]
    _write_sorted(tmp_path, "buckets", batches)
    _write_sorted(tmp_path, "ranges", batches, max_items=len(items))
    shards = {p.name: p.read_bytes() for p in (tmp_path / "buckets" / "out").iterdir()}
    assert sorted(shards) == [*(f"a-{i}-of-4.jsonl.zst" for i in range(4)), "b-0-of-1.jsonl.zst"]
    assert {p.name: p.read_bytes() for p in (tmp_path / "ranges" / "out").iterdir()} == shards


def test_a_bound_below_the_real_group_size_fails_instead_of_moving_records(tmp_path: Path) -> None:
    items = [("a", b"k%04d" % n, b"v") for n in range(400)]
    with pytest.raises(Exception, match="split by 3 shards"):
        _write_sorted(tmp_path, "wrong", [items[:200], items[200:]], max_items=100)


def test_per_group_bounds_give_the_same_shards_too(tmp_path: Path) -> None:
    items = sorted([(g, b"k%04d" % n, b"%s%d" % (g.encode(), n)) for g in ("a", "many") for n in range(400)])
    batches = [items[start : start + 130] for start in range(0, len(items), 130)]
    _write_sorted(tmp_path, "buckets", batches)
    _write_sorted(tmp_path, "bounded", batches, max_items={"a": 400})
    shards = {p.name: p.read_bytes() for p in (tmp_path / "buckets" / "out").iterdir()}
    assert len(shards) == 6
    assert {p.name: p.read_bytes() for p in (tmp_path / "bounded" / "out").iterdir()} == shards
