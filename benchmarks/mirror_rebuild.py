"""The mirror importer's fallback rebuild (``write_sorted``) alone: CPU time and peak memory.

    python -m benchmarks.mirror_rebuild --records 200000
    python -m benchmarks.mirror_rebuild --state MIRROR/current    # the records of an imported mirror

The rebuild runs when a delta moves a group across a multiple of ``recordsPerShard``
(docs/mirror.md); ``benchmarks.mirror`` only reaches it at some scales. This feeds it
``--records`` synthetic records of three kinds (lines of 0.8-6 KB, one SBOM in 90 of
60 KB), each with its record-index row and four package rows, through ``items_of_line``,
the importer's producer. Reported: CPU seconds (``resource.getrusage``: the machine is
shared), the process's peak RSS, and tracemalloc's peak for the run phase (batches
sorted into run files) and the merge phase (shards written) with ``--trace``. With
``--state``, the items are those of a real mirror state's lines instead (what the
importer feeds the rebuild; e.g. the mixed ledger's SBOM lines of ~160 KB), sharded with
the state's ``recordsPerShard``.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import tempfile
import tracemalloc
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from stella.adapters.mirror.items import items_of_line
from stella.canonical import dumps_plain
from stella.mirror import rebuild
from stella.mirror.importer import state_lines
from stella.sorting import RunSlice, SortItem

__all__ = ["run"]

_KINDS = ("advisory", "sbom", "vex")


def _items(records: int) -> Iterator[SortItem]:
    rng = random.Random(7)
    for n in range(records):
        kind = _KINDS[n % 3]
        size = 60_000 if kind == "sbom" and n % 30 == 1 else rng.randint(800, 6000)
        envelope = {
            "kind": kind,
            "id": f"ID-{n:09d}",
            "modified": "2026-11-27T00:00:00Z",
            "digest": f"sha256:{n:064x}",
            "source": "bench",
            "ingestedAt": "2026-11-27T00:00:00Z",
            "linkset": {
                "aliases": [],
                "purls": [f"pkg:npm/p{rng.randint(0, 50_000)}@1.{p}" for p in range(4)],
                "sbomSubject": f"subject-{n}",
                "vexProducts": [],
            },
            "document": {"text": "x" * size},
        }
        yield from items_of_line(dumps_plain(envelope), where="bench")


def _state_items(state: Path) -> Iterator[SortItem]:
    for where, line in state_lines(state):
        yield from items_of_line(line, where=where)


def run(records: int, *, trace: bool, state: Path | None = None) -> dict[str, Any]:
    phases: dict[str, float] = {}
    merge = rebuild.merge_slices

    def timed_merge(members: Sequence[RunSlice], **options: Any) -> Iterator[tuple[bytes, bytes]]:
        if trace and "run" not in phases:
            phases["run"] = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.reset_peak()
        return merge(members, **options)

    rebuild.merge_slices = timed_merge  # type: ignore[assignment]
    if trace:
        tracemalloc.start()
    before = resource.getrusage(resource.RUSAGE_SELF)
    with tempfile.TemporaryDirectory() as folder:
        runs, out = Path(folder, "runs"), Path(folder, "out")
        runs.mkdir()
        out.mkdir()
        per_shard = 25_000
        if state is not None:
            per_shard = int(json.loads((state / "mirror.json").read_bytes())["recordsPerShard"])
            records = sum(1 for _item in state_lines(state))
        items = _items(records) if state is None else _state_items(state)
        entries = rebuild.write_sorted(
            items, temp_dir=str(runs), out_root=str(out), records_per_shard=per_shard
        )
        run_files = len(list(runs.glob("run-*.bin")))
    after = resource.getrusage(resource.RUSAGE_SELF)
    rebuild.merge_slices = merge  # type: ignore[assignment]
    if trace:
        phases["merge"] = tracemalloc.get_traced_memory()[1] / 2**20
    return {
        "records": records,
        "files": len(entries),
        "runs": run_files,
        "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
        "peak_rss_mb": round(after.ru_maxrss / 1024),
        **{f"tracemalloc_{phase}_mb": round(mb) for phase, mb in phases.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--trace", action="store_true", help="tracemalloc peaks per phase (3-4x slower)")
    parser.add_argument("--state", type=Path, help="rebuild the records of this mirror state instead")
    args = parser.parse_args()
    print(run(args.records, trace=args.trace, state=args.state))


if __name__ == "__main__":
    main()
