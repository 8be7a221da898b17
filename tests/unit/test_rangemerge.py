"""Key ranges of a sorted group: bounded merges, sampled split keys, and reduction on helper processes.

The range path must give exactly the serial path's pairs (and so the same trivy.db bytes)
for any number of ranges, read only what its range needs, and fail or stop without
leaving helper processes or their files behind.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from stella import sorting
from stella.adapters.trivy.dbitems import (
    DB_GROUP,
    merged_db_pairs,
    reduce_db_range,
    trivy_db_items,
    write_db_outputs,
)
from stella.ledger.ingest import to_record
from stella.model import LedgerRecord
from stella.rangemerge import PairLists, RunGroups, split_keys
from stella.sorting import RunSlice, SortItem, merge_slices, sample_keys, write_blocks, write_run
from tests.support import processes_naming

T0 = "2026-01-01T00:00:00Z"
Pair = tuple[bytes, bytes]


# --- bounded merges ---------------------------------------------------------------------------------


def _runs(tmp_path: Path, seed: int = 3) -> list[RunSlice]:
    """Three runs of one group, many blocks each, keys repeated within and across blocks and runs."""
    rng = random.Random(seed)
    slices: list[RunSlice] = []
    for run in range(3):
        items: list[SortItem] = [
            ("g", b"key-%03d" % rng.randrange(400), b"%d-%d-" % (run, n) + b"v" * rng.randrange(50, 400))
            for n in range(3_000)
        ]
        slices += write_run(str(tmp_path / "runs"), items, bucketed=False)
    assert all(piece.length > 15 * 32 * 1024 for piece in slices)  # many blocks each
    return slices


def _zstd_slice(tmp_path: Path, pairs: list[Pair]) -> RunSlice:
    """A slice of compressed blocks, as runs on object storage are written."""
    path = tmp_path / "zstd-run.bin"
    keys, values = zip(*sorted(pairs), strict=True)
    with path.open("wb") as handle:
        length = sorting._write_blocks(handle, zstandard.ZstdCompressor(level=1), keys, values)
    return RunSlice(str(path), "g", 0, 0, length, len(pairs))


_BOUNDS = [
    (None, None),
    (b"key-100", b"key-200"),
    (b"key-100x", b"key-101"),  # bounds that are no key
    (None, b"key-000"),  # empty: below the first key
    (b"key-399", None),
    (b"key-4", None),  # past the last key
    (b"key-250", b"key-250"),  # empty range
    (b"key-250", b"key-251"),  # one key, whose pairs span blocks
]


@pytest.mark.parametrize(("lo", "hi"), _BOUNDS)
def test_a_bounded_merge_gives_exactly_the_pairs_in_its_range(
    tmp_path: Path, lo: bytes | None, hi: bytes | None
) -> None:
    slices = _runs(tmp_path)
    everything = list(merge_slices(slices))
    wanted = [p for p in everything if (lo is None or p[0] >= lo) and (hi is None or p[0] < hi)]
    assert list(merge_slices(slices, lo=lo, hi=hi)) == wanted
    compressed = _zstd_slice(tmp_path, everything)
    assert list(merge_slices([compressed], lo=lo, hi=hi)) == wanted


def test_ranges_cut_at_any_keys_add_up_to_the_whole(tmp_path: Path) -> None:
    slices = _runs(tmp_path, seed=11)
    everything = list(merge_slices(slices))
    cuts = split_keys(slices, 4)
    assert 2 <= len(cuts) <= 3 and cuts == sorted(set(cuts))
    edges: list[bytes | None] = [None, *cuts, None]
    pieces = [list(merge_slices(slices, lo=a, hi=b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    assert [pair for piece in pieces for pair in piece] == everything
    sizes = [len(piece) for piece in pieces]
    assert max(sizes) < 3 * len(everything) / len(pieces)  # about even, from sampled block keys


def test_blocks_below_the_range_are_passed_over_without_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slices = _runs(tmp_path)
    decoded: list[int] = []
    real = sorting._decode_block

    def counting(raw: bytes, count: int, where: str) -> list[Pair]:
        decoded.append(count)
        return real(raw, count, where)

    monkeypatch.setattr(sorting, "_decode_block", counting)
    list(merge_slices(slices))
    every = len(decoded)
    decoded.clear()
    tail = list(merge_slices(slices, lo=b"key-380"))
    assert tail and all(key >= b"key-380" for key, _ in tail)
    assert len(decoded) < every / 5  # only the blocks holding keys >= lo


def test_sampled_keys_are_first_keys_of_blocks_in_order(tmp_path: Path) -> None:
    (piece, *_rest) = _runs(tmp_path)
    keys = {key for key, _value in merge_slices([piece])}
    every, some = sample_keys(piece, 1), sample_keys(piece, 4)
    assert every[0] == min(keys) and every == sorted(every) and set(every) <= keys
    assert some == every[::4]


def test_pairs_written_as_blocks_read_back_whole(tmp_path: Path) -> None:
    pairs = [(b"k%06d" % n, b"v" * (n % 97)) for n in range(20_000)]
    path = tmp_path / "out.bin"
    with path.open("wb") as handle:
        length, count = write_blocks(handle, iter(pairs), chunk=3_000)
    assert (length, count) == (path.stat().st_size, len(pairs))
    assert list(merge_slices([RunSlice(str(path), "g", 0, 0, length, count)])) == pairs


# --- reduction on helper processes --------------------------------------------------------------


def _shared_records(shared_data: Path) -> list[LedgerRecord]:
    records = []
    for path in sorted((shared_data / "advisories").glob("*.jsonl.zst")):
        with path.open("rb") as handle:
            lines = zstandard.ZstdDecompressor().stream_reader(handle).read().splitlines()
        records += [to_record(line, tenant="t1", source=path.name, ingested_at=T0) for line in lines]
    # A later revision of some advisories: their first revisions' entries must be dropped.
    for record in records[:40]:
        doc = json.loads(record.document)
        doc["modified"] = "2030-01-01T00:00:00Z"
        doc["summary"] = "revised"
        records.append(to_record(json.dumps(doc).encode(), tenant="t1", source="revised", ingested_at=T0))
    return records


@pytest.fixture(scope="module")
def shared_items(shared_data: Path) -> list[SortItem]:
    items = [item for record in _shared_records(shared_data) for item in trivy_db_items(record)]
    random.Random(5).shuffle(items)  # runs cut from an unsorted stream, as workers write them
    return items


def _groups(tmp_path: Path, items: list[SortItem], helpers: int) -> RunGroups:
    runs = str(tmp_path / ".runs")
    slices = [
        piece
        for at in range(0, len(items), 7_000)
        for piece in write_run(runs, items[at : at + 7_000], bucketed=False)
    ]
    by_group: dict[str, list[RunSlice]] = {}
    for piece in slices:
        by_group.setdefault(piece.group, []).append(piece)
    return RunGroups(by_group, temp_dir=runs, helpers=helpers, min_pairs=0)


def test_helpers_reduce_key_ranges_into_the_serial_pairs_and_db_bytes(
    tmp_path: Path, shared_items: list[SortItem], caplog: pytest.LogCaptureFixture
) -> None:
    serial_groups = _groups(tmp_path / "one", shared_items, helpers=1)
    parallel_groups = _groups(tmp_path / "two", shared_items, helpers=2)
    serial_counts: Counter[str] = Counter()
    expected = list(merged_db_pairs(serial_groups.pairs(DB_GROUP), set(), serial_counts))
    counts: Counter[str] = Counter()
    with (
        caplog.at_level(logging.INFO, logger="stella.rangemerge"),
        parallel_groups.reduce(DB_GROUP, reduce_db_range, b"", counts) as reduced,
    ):
        got = list(reduced)
    assert "reducing 6 key ranges on 2 helper processes" in caplog.text
    assert got == expected and counts == serial_counts and counts["merged"] > 100

    written = {}
    for name, groups in (("one", serial_groups), ("two", parallel_groups)):
        root = tmp_path / f"out-{name}"
        entries = write_db_outputs(str(root), groups)
        written[name] = {entry.path: (root / entry.path).read_bytes() for entry in entries}
    assert written["one"] == written["two"]
    report = written["two"]["data/reports/superseded.jsonl.zst"]
    assert b"supersededBy" in zstandard.ZstdDecompressor().decompressobj().decompress(report)
    in_memory = PairLists({group: sorted(pairs) for group, pairs in _by_group(shared_items).items()})
    root = tmp_path / "out-memory"
    entries = write_db_outputs(str(root), in_memory)
    assert {entry.path: (root / entry.path).read_bytes() for entry in entries} == written["one"]
    assert not list((tmp_path / "two" / ".runs").glob("ranges-*"))  # the helpers' files are gone


def _by_group(items: list[SortItem]) -> dict[str, list[Pair]]:
    groups: dict[str, list[Pair]] = {}
    for group, key, value in items:
        groups.setdefault(group, []).append((key, value))
    return groups


def test_a_corrupt_run_fails_its_range_by_name_and_leaves_nothing(
    tmp_path: Path, shared_items: list[SortItem]
) -> None:
    groups = _groups(tmp_path, shared_items, helpers=2)
    victim = groups.slices[DB_GROUP][-1]
    with open(victim.path, "r+b") as handle:  # the second block's codec byte: a block no sample reads
        handle.seek(victim.offset)
        first_length = int.from_bytes(handle.read(4), "little")
        handle.seek(victim.offset + 9 + first_length + 8)
        handle.write(b"\x07")
    failed = r"merging key range \d+ of the sorted runs failed: OSError: run file .*unknown block codec 7"
    with (
        pytest.raises(OSError, match=failed),
        groups.reduce(DB_GROUP, reduce_db_range, b"", Counter()) as reduced,
    ):
        list(reduced)
    assert not processes_naming(str(tmp_path))
    assert not list(Path(str(groups.temp_dir)).glob("ranges-*"))


def test_an_abandoned_reduction_stops_its_helpers_and_removes_their_files(
    tmp_path: Path, shared_items: list[SortItem]
) -> None:
    groups = _groups(tmp_path, shared_items, helpers=2)
    with groups.reduce(DB_GROUP, reduce_db_range, b"", Counter()) as reduced:
        assert next(reduced)  # then leave, the other ranges unread
    assert not processes_naming(str(tmp_path))
    assert not list(Path(str(groups.temp_dir)).glob("ranges-*"))


def test_small_groups_remote_runs_and_one_worker_reduce_in_this_process(
    tmp_path: Path, shared_items: list[SortItem], monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[object] = []
    monkeypatch.setattr("stella.rangemerge._reduce_ranges", lambda *args: started.append(args))
    base = _groups(tmp_path, shared_items, helpers=2)
    for groups in (
        RunGroups(base.slices, temp_dir=base.temp_dir, helpers=1, min_pairs=0),
        RunGroups(base.slices, temp_dir=base.temp_dir, helpers=2),  # fewer pairs than the default bound
        RunGroups(base.slices, temp_dir="gs://bucket/runs", helpers=2, min_pairs=0),
    ):
        with groups.reduce(DB_GROUP, reduce_db_range, b"", Counter()) as reduced:
            assert list(reduced)
    assert not started


def test_a_reducer_must_be_importable_by_name(tmp_path: Path, shared_items: list[SortItem]) -> None:
    def local(pairs: Iterator[Pair], context: bytes, counts: Counter[str]) -> Iterator[Pair]:
        return pairs

    groups = _groups(tmp_path, shared_items, helpers=2)
    with (
        pytest.raises(ValueError, match="module-level function"),
        groups.reduce(DB_GROUP, local, b"", Counter()),
    ):
        pass
    assert not list(Path(str(groups.temp_dir)).glob("ranges-*"))


def test_helpers_import_this_package_whatever_the_current_folder_holds(
    tmp_path: Path, shared_items: list[SortItem], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python -m`` puts the cwd first on sys.path: another checkout there must not answer for ours."""
    decoy = tmp_path / "elsewhere" / "stella"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text('raise ImportError("the stella package of another checkout")\n')
    groups = _groups(tmp_path / "runs", shared_items, helpers=2)
    expected = list(merged_db_pairs(groups.pairs(DB_GROUP), set()))
    monkeypatch.chdir(decoy.parent)
    with groups.reduce(DB_GROUP, reduce_db_range, b"", Counter()) as reduced:
        assert list(reduced) == expected


@pytest.mark.parametrize("cut", [3, 20], ids=["inside-a-block-head", "inside-a-block"])
def test_a_run_cut_short_fails_the_sampling_by_name(
    tmp_path: Path, shared_items: list[SortItem], cut: int
) -> None:
    """Splitting reads the runs before any helper starts: a cut there is an OSError naming the file too."""
    groups = _groups(tmp_path, shared_items, helpers=2)
    victim = groups.slices[DB_GROUP][0]
    with open(victim.path, "r+b") as handle:
        handle.truncate(victim.offset + cut)
    with pytest.raises(OSError, match=rf"run file {victim.path} is truncated"):
        split_keys([victim], 4)
    with (
        pytest.raises(OSError, match="is truncated"),
        groups.reduce(DB_GROUP, reduce_db_range, b"", Counter()),
    ):
        pass
