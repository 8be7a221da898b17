"""mirror:full and mirror:delta export and import: time, size and peak RSS, in one run.

    python -m benchmarks.mirror --records 1000000

1. A synthetic ledger of ``--records`` documents of every kind (cached), copied so it can grow.
2. ``mirror:full`` (signed, archived): wall time, archive size, peak RSS.
3. 1 % change: new documents and revisions (``ledger generate`` with another seed, 0.7 %) and
   removals (0.3 % of the ids excluded by selector), then ``mirror:delta`` against the full; and
   the same delta without the removals (selection unchanged: the base's segments are skipped).
4. ``stella mirror import`` of the full into an empty mirror, then of the delta.
5. What a delta's driver does before its pipeline, alone, in this process: check and stage the
   full's record index (``stage_chain``, from the archive) under a staging folder (CPU time, bytes).

The in-run baseline is the full export: the issue's targets are delta export time <= 15 % of
it, delta size <= 3 % of it, and peak RSS < 1.5 GB everywhere. Wall and CPU time are both
reported: on a shared machine the CPU-time share is the one that does not drift with load.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from benchmarks.common import BIN, Measurement, bench_ledger, measure, print_table

__all__ = ["run"]

AS_OF = ("2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z")


def _archive(out: Path, prefix: str) -> Path:
    return next(out.glob(f"{prefix}*.tar.zst"))


def _removed_ids(bundle: Path, share: float) -> list[str]:
    ids = sorted(
        {
            row
            for f in (bundle / "data/indexes/records").glob("*.parquet")
            for row in pq.read_table(f, columns=["id"]).column(0).to_pylist()
        }
    )
    step = max(1, round(1 / share))
    return ids[::step]


def _stage_base(ledger: Path, out: Path, base: Path, staging: Path) -> tuple[float, int]:
    """(CPU seconds, bytes staged) of :func:`stage_chain` for ``base``: the delta driver's extra work."""
    from pipelines.mirror import parse_mirror_options, resolve_base
    from pipelines.mirror_delta import PROFILE
    from stella.adapters.mirror.base import stage_chain
    from stella.bundle.request import new_request

    request = new_request(
        tenant="bench", profile=PROFILE, ledger_root=str(ledger), out_dir=str(out), options=[f"base={base}"]
    )
    chain = resolve_base(request, parse_mirror_options(request.options, delta=True)).chain
    before = resource.getrusage(resource.RUSAGE_SELF)
    stage_chain(chain, str(staging))
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return cpu, sum(p.stat().st_size for p in staging.rglob("*") if p.is_file())


def run(records: int) -> dict[str, object]:
    source = bench_ledger(records, advisories_only=False)
    work = Path(tempfile.mkdtemp(prefix="stella-bench-mirror-"))
    try:
        ledger, out, mirror = work / "ledger", work / "out", work / "mirror"
        shutil.copytree(source, ledger)
        stella = str(BIN / "stella")
        subprocess.run(
            [stella, "keys", "generate", "--type", "ed25519", "--out", str(work / "k")],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [stella, "keys", "trust-root", str(work / "k.pub"), "--out", str(work / "root.json")],
            check=True,
            capture_output=True,
        )
        common = [
            "--tenant",
            "bench",
            "--ledger",
            str(ledger),
            "--out",
            str(out),
            "--sign-key",
            str(work / "k.key"),
            "--archive",
        ]
        full = measure(
            "mirror:full export",
            [stella, "-q", "export", "run", "--profile", "mirror:full", "--as-of", AS_OF[0], *common],
            items=records,
        )
        full_archive = _archive(out, "bench-mirror-full-")
        changed = max(1, records * 7 // 1000)
        subprocess.run(
            [stella, "-q", "ledger", "generate", "--tenant", "bench", "--records", str(changed), "--seed", "99",
             "--ledger", str(ledger), "--ingested-at", AS_OF[1]],
            check=True, capture_output=True,
        )  # fmt: skip
        removed = _removed_ids(out / full_archive.name.removesuffix(".tar.zst"), 0.003)
        delta = measure(
            "mirror:delta export (1 % changed)",
            [stella, "-q", "export", "run", "--profile", "mirror:delta", "--as-of", AS_OF[1], *common,
             "--option", f"base={full_archive.name.removesuffix('.tar.zst')}",
             "--selector", "exclude-id=" + ",".join(removed)],
            items=records,
        )  # fmt: skip
        delta_archive = _archive(out, "bench-mirror-delta-")
        # The same additions with the selection unchanged (no removals): the base's segments are skipped.
        appended = measure(
            "mirror:delta export (0.7 % added, same selection)",
            [stella, "-q", "export", "run", "--profile", "mirror:delta", "--as-of", AS_OF[1], *common[:5],
             str(work / "out-appended"), *common[6:], "--option", f"base={out / full_archive.name}"],
            items=records,
        )  # fmt: skip
        manifest = json.loads(
            (out / delta_archive.name.removesuffix(".tar.zst") / "export.json").read_bytes()
        )
        imports = [
            measure(
                f"import {name}",
                [
                    stella,
                    "-q",
                    "mirror",
                    "import",
                    str(archive),
                    "--into",
                    str(mirror),
                    "--trust-root",
                    str(work / "root.json"),
                    "--now",
                    "2026-11-29T00:00:00Z",
                ],
                items=records,
            )  # fmt: skip
            for name, archive in (("full", full_archive), ("delta", delta_archive))
        ]
        stage_cpu, staged = _stage_base(ledger, out, full_archive, work / "staged-base")
        rows: list[Measurement] = [full, delta, appended, *imports]
        print_table(f"mirror, {records:,} records (docs/s = ledger records / s)", rows)
        sizes = {"full": full_archive.stat().st_size, "delta": delta_archive.stat().st_size}
        result = {
            "records": records,
            "changes": {k: manifest["delta"][k] for k in ("added", "changed", "removed")},
            "fullSeconds": round(full.seconds, 2),
            "deltaSeconds": round(delta.seconds, 2),
            "deltaTimeShare": round(delta.seconds / full.seconds, 3),
            "fullCpuSeconds": round(full.cpu_seconds, 2),
            "deltaCpuSeconds": round(delta.cpu_seconds, 2),
            "deltaCpuShare": round(delta.cpu_seconds / full.cpu_seconds, 3),
            "sameSelectionDeltaCpuSeconds": round(appended.cpu_seconds, 2),
            "sameSelectionDeltaCpuShare": round(appended.cpu_seconds / full.cpu_seconds, 3),
            "fullBytes": sizes["full"],
            "deltaBytes": sizes["delta"],
            "deltaSizeShare": round(sizes["delta"] / sizes["full"], 4),
            "importFullSeconds": round(imports[0].seconds, 2),
            "importDeltaSeconds": round(imports[1].seconds, 2),
            "importFullCpuSeconds": round(imports[0].cpu_seconds, 2),
            "importDeltaCpuSeconds": round(imports[1].cpu_seconds, 2),
            "peakRssMb": round(max(r.peak_rss_mb for r in rows)),
            "baseStagedBytes": staged,
            "baseStageCpuSeconds": round(stage_cpu, 3),
        }
        print(json.dumps(result, indent=2))
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    run(parser.parse_args().records)


if __name__ == "__main__":
    main()
