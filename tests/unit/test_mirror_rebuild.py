"""The importer's rebuild (stella.mirror.rebuild.write_sorted) bounds its memory by bytes.

A batch becomes a run at ``_RUN_ITEMS`` items or ``_RUN_BYTES`` key and value bytes,
whichever comes first, and a merge opens at most ``_MERGE_BYTES`` of run blocks; how the
input is cut into runs and merged must never change the files.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

import stella.sorting as sorting
from stella.adapters.mirror.items import items_of_line
from stella.canonical import dumps_plain
from stella.mirror import rebuild
from stella.sorting import RunSlice, SortItem


def _items(count: int, *, pad: int = 0) -> list[SortItem]:
    items: list[SortItem] = []
    for n in range(count):
        envelope = {
            "kind": "advisory",
            "id": f"CVE-2026-{n:05d}",
            "modified": "2026-11-27T00:00:00Z",
            "digest": f"sha256:{n:064x}",
            "source": "osv",
            "ingestedAt": "2026-11-27T00:00:00Z",
            "linkset": {"aliases": [f"GHSA-{n:04d}"], "purls": [f"pkg:npm/p{n % 7}@1.{n}"]},
            "document": {"details": "x" * (pad or (n % 50) * 40)},
        }
        items.extend(items_of_line(dumps_plain(envelope), where="test"))
    return items


def _build(root: Path, items: list[SortItem]) -> tuple[list[str], dict[str, bytes], int]:
    runs, out = root / "runs", root / "out"
    runs.mkdir(parents=True)
    out.mkdir()
    entries = rebuild.write_sorted(items, temp_dir=str(runs), out_root=str(out), records_per_shard=40)
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    return [e.path for e in entries], files, len(list(runs.glob("run-*.bin")))


def test_batches_are_cut_by_bytes_and_the_files_do_not_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = _items(120)
    paths, files, one_run = _build(tmp_path / "whole", items)
    assert one_run == 1
    assert any(path.endswith(".parquet") for path in paths)
    size = sum(len(key) + len(value) for _group, key, value in items)
    monkeypatch.setattr(rebuild, "_RUN_BYTES", size // 5)
    cut_paths, cut_files, runs = _build(tmp_path / "cut", items)
    assert runs >= 5  # the item count (100,000) alone would have made one run
    assert (cut_paths, cut_files) == (paths, files)


def test_merges_open_no_more_than_the_byte_cap_and_the_files_do_not_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large lines (each over a run block, so each is a block of its own) in many runs: every merge
    of the rebuild opens at most ``_MERGE_BYTES`` of them. Without the byte cap a merge opened every
    slice of its shard (one ~20 KB record each), whatever they weighed together."""
    items = _items(120, pad=20_000)
    _paths, files, _runs = _build(tmp_path / "whole", items)
    opened: list[int] = []  # slices per merge of the raw lines (the index rows are small)
    merged = sorting._merged_blocks

    def counting(slices: Sequence[RunSlice], *bounds: bytes | None) -> Iterator[list[tuple[bytes, bytes]]]:
        if slices[0].group == "advisory":
            opened.append(len(slices))
        return merged(slices, *bounds)

    monkeypatch.setattr(sorting, "_merged_blocks", counting)
    monkeypatch.setattr(rebuild, "_RUN_BYTES", 60_000)  # a few records a run: many slices per shard
    cap = 400_000
    monkeypatch.setattr(rebuild, "_MERGE_BYTES", cap)
    _cut_paths, cut_files, runs = _build(tmp_path / "cut", items)
    assert runs >= 30
    assert cut_files == files
    assert max(opened) >= 2
    assert all(count * 20_000 <= cap for count in opened), opened
