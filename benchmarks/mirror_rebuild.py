"""The mirror importer's fallback rebuild (``write_sorted``) alone: CPU time and peak memory.

    python -m benchmarks.mirror_rebuild --records 200000

The rebuild runs when a delta moves a group across a multiple of ``recordsPerShard``
(docs/mirror.md); ``benchmarks.mirror`` only reaches it at some scales. This feeds it
``--records`` synthetic records of three kinds (lines of 0.8-6 KB, one SBOM in 90 of
60 KB), each with its record-index row and four package rows, through ``items_of_line``,
the importer's producer. Reported: CPU seconds (``resource.getrusage``: the machine is
shared), the process's peak RSS, and tracemalloc's peak for the run phase (batches
sorted into run files) and the merge phase (shards written) with ``--trace``.
"""

from __future__ import annotations

import argparse
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


def run(records: int, *, trace: bool) -> dict[str, Any]:
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
        entries = rebuild.write_sorted(
            _items(records), temp_dir=str(runs), out_root=str(out), records_per_shard=25_000
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
    print(run(parser.parse_args().records, trace=parser.parse_args().trace))


if __name__ == "__main__":
    main()
