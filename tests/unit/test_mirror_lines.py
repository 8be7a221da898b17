"""Merging line changes into a zstd JSON Lines shard without splitting it (stella.mirror.lines).

The merge must give exactly the text of the naive list edit, whatever the decompressor's block
boundaries, and the blocks written through ``write_jsonl_blocks`` must be the bytes
``write_jsonl_shard`` writes for the same lines (zstd's output does not depend on the cuts).
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest

from stella.bundle.shards import write_jsonl_blocks, write_jsonl_shard
from stella.errors import BundleIntegrityError
from stella.guards.streams import open_decompressed
from stella.mirror.lines import merge_text


def _reader(path: Path) -> io.RawIOBase:
    return open_decompressed(path.open("rb"), "zstd", what=path.name, error=BundleIntegrityError)


def _lines(rng: random.Random, count: int) -> list[bytes]:
    # Sizes around the 1 MiB read block, so lines and drops straddle block boundaries.
    return [b"%06d:" % n + b"x" * rng.choice((0, 10, 5_000, 700_000)) for n in range(count)]


@pytest.mark.parametrize("seed", range(4))
def test_merge_equals_the_list_edit_and_writes_the_same_bytes(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    old = _lines(rng, 40)
    write_jsonl_shard(str(tmp_path), "old.jsonl.zst", old)
    drops = sorted(rng.sample(range(len(old)), rng.randint(0, 8)))
    inserts = sorted((rng.randint(0, len(old)), b"new-%d" % n) for n in range(rng.randint(0, 8)))
    expected: list[bytes] = []
    for number in range(len(old) + 1):
        expected += [line for at, line in inserts if at == number]
        if number < len(old) and number not in drops:
            expected.append(old[number])
    dropped: list[bytes] = []
    text = merge_text(_reader(tmp_path / "old.jsonl.zst"), len(old), drops, inserts, dropped, where="old")
    merged = write_jsonl_blocks(str(tmp_path), "merged.jsonl.zst", text, records=len(expected))
    assert dropped == [old[at] for at in drops]
    direct = write_jsonl_shard(str(tmp_path), "direct.jsonl.zst", expected)
    assert (merged.digest, merged.bytes, merged.records) == (direct.digest, direct.bytes, direct.records)


@pytest.mark.parametrize("listed", [2, 4])
def test_a_shard_with_other_than_the_listed_lines_is_refused(tmp_path: Path, listed: int) -> None:
    write_jsonl_shard(str(tmp_path), "old.jsonl.zst", [b"a", b"b", b"c"])
    with pytest.raises(BundleIntegrityError, match="lines than its record index lists"):
        b"".join(merge_text(_reader(tmp_path / "old.jsonl.zst"), listed, [0], [], [], where="old"))
