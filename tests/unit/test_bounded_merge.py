"""Merges and shard writers hold a bounded number of bytes, not a bounded number of records.

A run block holds at least one pair, and a shard writer joined 1,024 lines at a time, so
both bounds were counts: with SBOM lines of ~160 KB (up to MBs) a merge of 2,048 slices
held ~650 MB and a writer's chunk ~160 MB, twice (mirror:full over 1.5 GB at 1M records).
These tests fail on the count-only bounds: they check what each merge opens and what
each chunk holds, never a process's memory.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import zstandard

import stella.sorting as sorting
from stella.bundle.shards import _CHUNK_BYTES, _CHUNK_LINES, line_chunks, write_jsonl_shard, zstd_compressor
from stella.sorting import RunSlice, merge_slices, write_run

_LARGE = 40 * 1024  # above the run block size: every pair is a block of its own


def _runs(
    directory: Path, rng: random.Random, runs: int, per_run: int, size: int
) -> tuple[list[RunSlice], list[tuple[bytes, bytes]]]:
    """``runs`` one-slice runs and every (key, value) pair they hold, sorted."""
    slices: list[RunSlice] = []
    pairs: list[tuple[bytes, bytes]] = []
    for _ in range(runs):
        items = [("g", rng.randbytes(8), rng.randbytes(size)) for _ in range(per_run)]
        slices += write_run(str(directory), items, bucketed=False)
        pairs += [(key, value) for _group, key, value in items]
    return slices, sorted(pairs)


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    opened: list[int] = []
    merged = sorting._merged_blocks

    def counting(slices: Sequence[RunSlice], *bounds: bytes | None) -> Iterator[list[tuple[bytes, bytes]]]:
        opened.append(len(slices))
        return merged(slices, *bounds)

    monkeypatch.setattr(sorting, "_merged_blocks", counting)
    return opened


def test_a_merge_of_large_records_opens_no_more_than_its_byte_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slices, expected = _runs(tmp_path, random.Random(1), runs=120, per_run=1, size=_LARGE)
    opened = _spy(monkeypatch)
    budget = 1 << 20
    assert list(merge_slices(slices, temp_dir=str(tmp_path / "spill"), max_bytes=budget)) == expected
    # Every open slice holds at least one whole pair: the count-only bound opened all 120 (4.8 MB).
    assert len(opened) > 1
    assert all(count >= 2 and count * _LARGE <= budget for count in opened)


def test_small_records_still_merge_in_one_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slices, expected = _runs(tmp_path, random.Random(2), runs=300, per_run=3, size=100)
    opened = _spy(monkeypatch)
    assert list(merge_slices(slices, temp_dir=str(tmp_path / "spill"))) == expected
    assert opened == [300]  # within DEFAULT_FAN_IN and MERGE_BYTES: no extra pass


def test_two_slices_above_the_bound_merge_without_a_spill(tmp_path: Path) -> None:
    slices, expected = _runs(tmp_path, random.Random(3), runs=2, per_run=2, size=_LARGE)
    # No temp_dir: a merge opens at least two slices, so no intermediate run is needed.
    assert list(merge_slices(slices, max_bytes=1024)) == expected


def test_line_chunks_hold_about_the_byte_bound_whatever_the_line_size() -> None:
    large = [b"%04d" % n + b"x" * 300_000 for n in range(40)]
    chunks = list(line_chunks(iter(large)))
    assert [line for chunk in chunks for line in chunk] == large
    # The count-only cut made one chunk of all 40 lines (12 MB).
    assert all(len(chunk) == 1 or sum(map(len, chunk)) <= _CHUNK_BYTES for chunk in chunks)
    small = [b"%05d" % n for n in range(5_000)]
    sizes = [len(chunk) for chunk in line_chunks(iter(small))]
    assert sizes[0] == 1 and max(sizes) == _CHUNK_LINES and sum(sizes) == len(small)


def test_a_shard_is_the_same_bytes_however_its_lines_are_cut(tmp_path: Path) -> None:
    rng = random.Random(4)
    lines = [rng.randbytes(rng.choice((10, 2_000, 400_000))).hex().encode() for _ in range(60)]
    entry = write_jsonl_shard(str(tmp_path), "shard.jsonl.zst", lines)
    whole = tmp_path / "whole.zst"
    with whole.open("wb") as handle, zstd_compressor().stream_writer(handle, closefd=False) as writer:
        writer.write(b"\n".join([*lines, b""]))
    assert (tmp_path / "shard.jsonl.zst").read_bytes() == whole.read_bytes()
    assert entry.records == len(lines)
    assert zstandard.ZstdDecompressor().decompressobj().decompress(whole.read_bytes()).count(b"\n") == 60
