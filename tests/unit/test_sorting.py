"""External sort: runs and merges give a total order with bounded per-shard state."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stella.slicetable import SliceTable
from stella.sorting import (
    BUCKETS,
    RunSlice,
    bucket_of,
    bucket_ranges,
    cogroup_sorted,
    merge_slices,
    shard_count,
    shard_of_bucket,
    write_run,
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.binary(min_size=1, max_size=12), st.binary(max_size=40)),
        max_size=300,
    ),
    st.integers(min_value=1, max_value=5),
)
def test_runs_merge_back_to_sorted_input(
    tmp_path_factory: object, items: list[tuple[str, bytes, bytes]], runs: int
) -> None:
    directory = tmp_path_factory.mktemp("runs")  # type: ignore[attr-defined]
    shuffled = list(items)
    random.Random(len(items)).shuffle(shuffled)
    slices = []
    for index in range(runs):
        slices.extend(write_run(str(directory), shuffled[index::runs]))
    for group in ("a", "b"):
        merged = list(merge_slices([s for s in slices if s.group == group]))
        assert merged == sorted((k, v) for g, k, v in items if g == group)
    assert sum(s.count for s in slices) == len(items)


def test_shard_assignment_covers_every_bucket_once() -> None:
    for shards in (1, 2, 3, 7, 64):
        owners = Counter(shard_of_bucket(b, shards) for b in range(BUCKETS))
        assert sorted(owners) == list(range(shards))
    assert shard_count(0, records_per_shard=10) == 1
    assert shard_count(25, records_per_shard=10) == 3
    assert shard_count(10**9, records_per_shard=1) == BUCKETS


def test_buckets_are_stable_values() -> None:
    # a salted hash() would differ between processes; these must never change
    # (blake2b-16 of the key, mod 64) -- pinned, because changing it moves records between shards
    assert [bucket_of(k) for k in (b"", b"a", b"PYSEC-2021-1")] == [62, 27, 35]
    assert 0 <= bucket_of(b"x") < BUCKETS


def test_empty_run_writes_nothing(tmp_path: Path) -> None:
    assert write_run(str(tmp_path), []) == []
    assert list(tmp_path.iterdir()) == []


def test_merge_fan_in_is_bounded(tmp_path: Path) -> None:
    import pytest

    items = [("g", f"{n:05d}".encode(), b"v") for n in range(200)]
    slices = [
        piece for start in range(0, 200, 10) for piece in write_run(str(tmp_path), items[start : start + 10])
    ]
    assert len(slices) > 4
    with pytest.raises(ValueError, match="needs a temp_dir"):
        merge_slices(slices, fan_in=4)
    merged = list(merge_slices(slices, temp_dir=str(tmp_path / "tmp"), fan_in=4))
    assert merged == sorted((k, v) for _g, k, v in items)


def test_unbucketed_runs_hold_one_slice_per_group_and_merge_the_same(tmp_path: Path) -> None:
    rng = random.Random(5)
    items = [(rng.choice("ab"), rng.randbytes(6), rng.randbytes(rng.randrange(0, 3000))) for _ in range(600)]
    bucketed = [
        p for start in range(0, 600, 150) for p in write_run(str(tmp_path), items[start : start + 150])
    ]
    whole = [
        p
        for start in range(0, 600, 150)
        for p in write_run(str(tmp_path), items[start : start + 150], bucketed=False)
    ]
    assert len(whole) == 8 and {p.bucket for p in whole} == {0}
    for group in "ab":
        expected = sorted((k, v) for g, k, v in items if g == group)
        assert list(merge_slices([p for p in whole if p.group == group])) == expected
        assert list(merge_slices([p for p in bucketed if p.group == group])) == expected


def _block_heads(path: Path) -> list[tuple[int, int]]:
    """(frame bytes, pairs) of every block in a local run file, read from its headers."""
    import stella.sorting as sorting

    data, at, heads = path.read_bytes(), 0, []
    while at < len(data):
        length, count, _codec = sorting._BLOCK_HEAD.unpack_from(data, at)
        heads.append((length, count))
        at += sorting._BLOCK_HEAD.size + length
    return heads


@pytest.mark.parametrize("bucketed", [False, True])
def test_blocks_stay_within_the_bound_when_pair_sizes_change_within_a_slice(
    tmp_path: Path, bucketed: bool
) -> None:
    """A merge holds ~1.5 decoded blocks per open slice, so a block must never exceed
    ``_BLOCK_BYTES`` (but for a single larger pair), however the pair sizes vary: a slice of
    short pairs followed by long ones (Trivy's bucket names, then advisories) used to be cut
    by the first pairs' mean size into blocks of megabytes."""
    import stella.sorting as sorting

    items = [("g", b"a%04d" % n, b"v") for n in range(200)]
    items += [("g", b"b%05d" % n, bytes(2000)) for n in range(3000)]
    items += [("g", b"c", bytes(3 * sorting._BLOCK_BYTES))]
    slices = write_run(str(tmp_path), items, bucketed=bucketed)
    heads = _block_heads(Path(slices[0].path))  # one run file: every slice's blocks in turn
    assert sum(count for _length, count in heads) == len(items)
    bound = max(sorting._BLOCK_BYTES * piece.width for piece in slices)
    assert all(length <= bound or count == 1 for length, count in heads)
    assert len(heads) < 250 + (sorting.BUCKETS if bucketed else 0)  # and not one pair per block either
    assert list(merge_slices(slices)) == sorted((k, v) for _g, k, v in items)


def test_a_truncated_run_is_an_error_not_a_short_shard(tmp_path: Path) -> None:
    import dataclasses

    import pytest

    (piece,) = write_run(str(tmp_path), [("g", b"k%d" % n, b"v" * 500) for n in range(100)], bucketed=False)
    with pytest.raises(OSError, match="truncated"):
        list(merge_slices([dataclasses.replace(piece, length=piece.length // 2)]))
    with pytest.raises(OSError, match="truncated"):
        list(merge_slices([dataclasses.replace(piece, count=piece.count + 1)]))


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["left", "right", "third"]),
        st.lists(st.tuples(st.binary(max_size=3), st.binary(max_size=4)), max_size=40),
        min_size=1,
    )
)
def test_cogroup_sorted_gives_each_key_once_with_every_sides_values(
    sides: dict[str, list[tuple[bytes, bytes]]],
) -> None:
    expected: dict[bytes, dict[str, list[bytes]]] = {}
    for side, pairs in sides.items():
        for key, value in pairs:
            expected.setdefault(key, {s: [] for s in sides})[side].append(value)
    for groups in expected.values():
        for values in groups.values():
            values.sort()
    got = list(cogroup_sorted({side: iter(sorted(pairs)) for side, pairs in sides.items()}))
    assert [key for key, _ in got] == sorted(expected)
    assert dict(got) == expected


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 40), st.binary(max_size=3)), max_size=400),
    st.integers(min_value=1, max_value=9),
    st.booleans(),
)
def test_block_merge_of_many_multi_block_slices_is_a_total_order(
    tmp_path_factory: object, pairs: list[tuple[int, bytes]], runs: int, disjoint: bool
) -> None:
    # Tiny blocks: every slice spans many blocks, so rounds, refills and bounds all get
    # exercised; equal keys across slices must still come out in (key, value) order.
    import stella.sorting as sorting

    directory = tmp_path_factory.mktemp("blocks")  # type: ignore[attr-defined]
    items = [("g", b"%03d" % key, value) for key, value in pairs]
    # disjoint: each run holds one key range (segments written at different times);
    # otherwise runs interleave over the whole key space
    chunks = [sorted(items)[i::runs] for i in range(runs)] if not disjoint else []
    if disjoint:
        ordered = sorted(items)
        size = -(-len(ordered) // runs) or 1
        chunks = [ordered[i : i + size] for i in range(0, len(ordered), size)]
    saved = sorting._BLOCK_BYTES
    sorting._BLOCK_BYTES = 24
    try:
        slices = [piece for chunk in chunks for piece in write_run(str(directory), chunk)]
    finally:
        sorting._BLOCK_BYTES = saved
    assert list(merge_slices(slices)) == sorted((k, v) for _g, k, v in items)
    spilled = list(merge_slices(slices, temp_dir=str(directory / "spill"), fan_in=3))
    assert spilled == sorted((k, v) for _g, k, v in items)


def test_join_batches_are_cut_by_bytes_as_well_as_by_items(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A join whose items are large cuts its output batches at ``BATCH_BYTES`` even when the
    item count is far below ``batch_size`` (as ReadLedger and the importer's rebuild do)."""
    import transforms.joins as joins

    items = [("side", b"k%05d" % i, b"v") for i in range(200)]
    slices = write_run(str(tmp_path), items)

    def join(
        key: bytes, groups: object, context: object
    ) -> tuple[list[tuple[str, bytes, bytes]], Counter[str]]:
        return [("out", key, b"x" * 1000)], Counter(joined=1)

    monkeypatch.setattr(joins, "BATCH_BYTES", 10_000)
    fn = joins.JoinBucketFn(["side"], join, str(tmp_path), batch_size=1_000_000)
    out = list(fn.process((0, SliceTable.pack(slices))))
    batches = [batch for batch, _counts in out]
    assert sum(len(b) for b in batches) == 200 and len(batches) >= 20
    assert all(sum(len(k) + len(v) for _g, k, v in b) < 10_000 + 1_100 for b in batches)
    assert sum((counts for _b, counts in out), Counter())["joined"] == 200


def test_a_joins_sides_share_one_fan_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A join merges its sides side by side, so ``fan_in`` bounds the slices open across all
    of them (each side spills down to its share first), not per side."""
    import stella.sorting as sorting
    import transforms.joins as joins

    open_now = peak = 0
    real = sorting._slice_blocks

    def counted(piece: object, decompressor: object, *bounds: object) -> object:
        nonlocal open_now, peak
        open_now += 1
        peak = max(peak, open_now)
        try:
            yield from real(piece, decompressor, *bounds)  # type: ignore[arg-type]
        finally:
            open_now -= 1

    monkeypatch.setattr(sorting, "_slice_blocks", counted)
    sides = ["a", "b", "c"]
    items = [(side, b"k%04d" % n, side.encode()) for side in sides for n in range(120)]
    slices = [
        piece for start in range(0, 120, 30) for side in sides
        for piece in write_run(str(tmp_path), [i for i in items if i[0] == side][start : start + 30], bucketed=False)
    ]  # fmt: skip
    assert len(slices) == 12

    def join(
        key: bytes, groups: object, context: object
    ) -> tuple[list[tuple[str, bytes, bytes]], Counter[str]]:
        return [("out", key, b"".join(v for vs in groups.values() for v in vs))], Counter(joined=1)  # type: ignore[attr-defined]

    fn = joins.JoinBucketFn(sides, join, str(tmp_path / "spill"), batch_size=1000, fan_in=6)
    out = list(fn.process((0, SliceTable.pack(slices))))
    assert [v for batch, _c in out for _g, _k, v in batch] == [b"abc"] * 120
    assert 0 < peak <= 6


@pytest.mark.parametrize("max_shards", [1, 2, 3, 4, 5, 17, 40, 64, 500])
def test_bucket_ranges_are_never_split_by_a_layout_within_the_bound(max_shards: int) -> None:
    starts = bucket_ranges(max_shards)
    assert starts[0] == 0 and list(starts) == sorted(set(starts))
    ends = [*starts[1:], BUCKETS]
    for shards in range(1, min(max_shards, BUCKETS) + 1):
        for start, end in zip(starts, ends, strict=True):
            assert {shard_of_bucket(b, shards) for b in range(start, end)} == {shard_of_bucket(start, shards)}
    assert bucket_ranges(1) == (0,)
    assert bucket_ranges(BUCKETS) == tuple(range(BUCKETS))
    # the bound matters: just past it, some range is split (for these small bounds)
    if max_shards <= 5:
        shards = max_shards + 1
        assert any(
            shard_of_bucket(start, shards) != shard_of_bucket(end - 1, shards)
            for start, end in zip(starts, ends, strict=True)
        )


def _shard_contents(slices: list[RunSlice], shards: int) -> dict[int, list[tuple[bytes, bytes]]]:
    by_shard: dict[int, list[RunSlice]] = {}
    for piece in slices:
        shard = shard_of_bucket(piece.bucket, shards)
        assert shard_of_bucket(piece.bucket + piece.width - 1, shards) == shard  # whole slices per shard
        by_shard.setdefault(shard, []).append(piece)
    return {shard: list(merge_slices(pieces)) for shard, pieces in sorted(by_shard.items())}


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.binary(min_size=1, max_size=8), st.binary(max_size=30)),
        max_size=250,
    ),
    st.integers(min_value=1, max_value=6),
    st.booleans(),
)
def test_range_slices_give_every_shard_the_same_pairs_as_bucket_slices(
    tmp_path_factory: object, items: list[tuple[str, bytes, bytes]], max_shards: int, presorted: bool
) -> None:
    directory = tmp_path_factory.mktemp("ranges")  # type: ignore[attr-defined]
    if presorted:  # the ledger's case: each batch already in key order (the check replaces the sort)
        items = sorted(items, key=lambda item: (item[1], item[2]))
    batches = [items[index::3] for index in range(3)]
    by_bucket = [p for batch in batches for p in write_run(str(directory), batch)]
    by_range = [p for batch in batches for p in write_run(str(directory), batch, max_shards=max_shards)]
    assert {p.width for p in by_bucket} <= {1}
    assert len(by_range) <= len(by_bucket)
    if max_shards == 1:  # one slice per group and run: nothing left to split
        assert {p.width for p in by_range} <= {BUCKETS}
    for shards in range(1, max_shards + 1):
        for group in ("a", "b"):
            assert _shard_contents([p for p in by_range if p.group == group], shards) == _shard_contents(
                [p for p in by_bucket if p.group == group], shards
            )


def test_a_presorted_run_keeps_input_order_and_a_shuffled_one_is_sorted(tmp_path: Path) -> None:
    rng = random.Random(11)
    items = sorted(("g", rng.randbytes(5), rng.randbytes(20)) for _ in range(400))
    items += [("g", items[0][1], b"")]  # an equal key: ordered by value, before its twin
    (sorted_piece,) = write_run(str(tmp_path), sorted(items, key=lambda i: (i[1], i[2])), max_shards=1)
    shuffled = list(items)
    rng.shuffle(shuffled)
    (shuffled_piece,) = write_run(str(tmp_path), shuffled, max_shards=1)
    expected = sorted((k, v) for _g, k, v in items)
    assert list(merge_slices([sorted_piece])) == expected
    assert list(merge_slices([shuffled_piece])) == expected
    assert (sorted_piece.count, sorted_piece.width) == (len(items), BUCKETS)


def test_run_slices_survive_pickling_with_their_width(tmp_path: Path) -> None:
    import pickle

    pieces = write_run(str(tmp_path), [("g", b"k%d" % n, b"v") for n in range(50)], max_shards=4)
    assert min(p.width for p in pieces) > 1 and sum(p.width for p in pieces) == BUCKETS
    assert [pickle.loads(pickle.dumps(p)) for p in pieces] == pieces


def test_per_group_bounds_range_only_the_bounded_groups(tmp_path: Path) -> None:
    items = [(group, b"k%04d" % n, group.encode()) for group in ("kind", "index") for n in range(300)]
    pieces = write_run(str(tmp_path), items, max_shards={"kind": 1})
    kind = [p for p in pieces if p.group == "kind"]
    index = [p for p in pieces if p.group == "index"]
    assert [(p.bucket, p.width, p.count) for p in kind] == [(0, BUCKETS, 300)]
    assert {p.width for p in index} == {1} and len(index) > 40  # unbounded: a slice per bucket
    for group, group_pieces in (("kind", kind), ("index", index)):
        assert list(merge_slices(group_pieces)) == [(k, v) for g, k, v in items if g == group]
