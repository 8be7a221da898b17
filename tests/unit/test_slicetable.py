"""SliceTable: the packed slices the sort's shuffles carry must be exactly the slices written."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stella.slicetable import SliceTable, slices_of
from stella.sorting import BUCKETS, RunSlice, merge_slices, shard_of_bucket, write_run

_SLICES = st.lists(
    st.builds(
        RunSlice,
        path=st.sampled_from(["/r/run-a.bin", "gs://b/run-b.bin", "/r/merge-c.bin"]),
        group=st.sampled_from(["advisory", "sbom", "ü"]),
        bucket=st.integers(0, BUCKETS - 1),
        offset=st.integers(0, 2**63 - 1),
        length=st.integers(0, 2**63 - 1),
        count=st.integers(0, 2**32 - 1),
        width=st.integers(1, BUCKETS),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(_SLICES)
def test_packing_keeps_every_slice_of_every_group(slices: list[RunSlice]) -> None:
    tables = SliceTable.pack(slices)
    assert [t.group for t in tables] == sorted({s.group for s in slices})
    assert sorted(slices_of(tables), key=repr) == sorted(slices, key=repr)
    for table in tables:
        assert table.count == sum(s.count for s in slices if s.group == table.group)
        assert len(table) == sum(1 for s in slices if s.group == table.group)
        assert len(table.paths) == len(set(table.paths))  # a path once per table, however many slices
        assert pickle.loads(pickle.dumps(table)) == table


@settings(max_examples=200, deadline=None)
@given(_SLICES, st.integers(1, BUCKETS))
def test_split_then_join_is_the_same_slices(slices: list[RunSlice], parts: int) -> None:
    for table in SliceTable.pack(slices):
        split = table.split(lambda bucket, _width: shard_of_bucket(bucket, parts))
        assert sorted(split) == sorted({shard_of_bucket(s.bucket, parts) for s in table.slices()})
        for part, piece in split.items():
            assert {shard_of_bucket(s.bucket, parts) for s in piece.slices()} == {part}
        joined = SliceTable.join(table.group, split.values())
        assert sorted(joined.slices(), key=repr) == sorted(table.slices(), key=repr)


def test_join_refuses_another_group() -> None:
    (table,) = SliceTable.pack([RunSlice("/r/a", "advisory", 0, 0, 1, 1)])
    with pytest.raises(ValueError, match="'advisory' into group 'sbom'"):
        SliceTable.join("sbom", [table])


def test_tables_merge_to_what_their_slices_merge_to(tmp_path: Path) -> None:
    """Through pack, split by shard and join, a shard's merge reads the same pairs as from the slices."""
    rng = random.Random(7)
    items = [
        ("g", b"k%06d" % rng.randrange(10**6), rng.randbytes(rng.randrange(1, 300))) for _ in range(3000)
    ]
    slices = [
        p for start in range(0, 3000, 250) for p in write_run(str(tmp_path), items[start : start + 250])
    ]
    tables = [t for start in range(0, len(slices), 7) for t in SliceTable.pack(slices[start : start + 7])]
    parts: dict[int, list[SliceTable]] = {}
    for table in tables:
        for shard, part in table.split(lambda bucket, _w: shard_of_bucket(bucket, 5)).items():
            parts.setdefault(shard, []).append(part)
    for shard, pieces in parts.items():
        expected = [s for s in slices if shard_of_bucket(s.bucket, 5) == shard]
        got = slices_of([SliceTable.join("g", pieces)])
        assert list(merge_slices(got)) == list(merge_slices(expected))
    assert sum(len(list(merge_slices(slices_of([SliceTable.join("g", p)])))) for p in parts.values()) == 3000
