"""The Trivy layer (``db.tar.gz``) alone: the writer at one and N threads beside the old stdlib writer.

    python -m benchmarks.trivy_layer --db PATH/TO/trivy.db [--threads 2]

``benchmarks.trivy_db`` runs it on the ``trivy.db`` it exported, so its figures sit
beside the export's. Each writer runs in its own process on the same file:

1. the baseline: what the export wrote before (Python's ``gzip`` at level 6 under
   ``tarfile``'s stream mode, one thread);
2. ``write_deterministic_tar_gz`` with ``threads=1`` (a one-worker run);
3. the same with ``--threads`` (a ``--workers N`` run): its bytes must equal step 2's
   (checked), and on free cores its wall time falls with the threads while its CPU
   time stays.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
import tempfile
from pathlib import Path

from benchmarks.common import Measurement, measure, print_table, ratio_line

__all__ = ["layer_main", "run"]

_METADATA = b'{"DownloadedAt":"0001-01-01T00:00:00Z","Version":2}'


def _stdlib_layer(db: Path, out: Path) -> None:
    """The writer as it was: stdlib gzip level 6, one thread, the same tar members."""
    with (
        out.open("wb") as handle,
        gzip.GzipFile(filename="", mode="wb", fileobj=handle, mtime=0, compresslevel=6) as gz,
        tarfile.open(fileobj=gz, mode="w|", format=tarfile.USTAR_FORMAT) as tar,
    ):
        for name, source in (("metadata.json", _METADATA), ("trivy.db", db)):
            info = tarfile.TarInfo(name)
            info.mode, info.mtime, info.uname, info.gname = 0o644, 0, "", ""
            if isinstance(source, bytes):
                info.size = len(source)
                tar.addfile(info, io.BytesIO(source))
            else:
                with source.open("rb") as src:
                    info.size = os.fstat(src.fileno()).st_size
                    tar.addfile(info, src)


def layer_main(mode: str, db: str, out: str) -> None:
    """Write one layer: ``mode`` is ``stdlib`` or a thread count."""
    from stella.adapters.trivy.artifact import write_deterministic_tar_gz

    if mode == "stdlib":
        _stdlib_layer(Path(db), Path(out))
    else:
        write_deterministic_tar_gz(
            out, [("trivy.db", Path(db)), ("metadata.json", _METADATA)], threads=int(mode)
        )
    digest = hashlib.sha256(Path(out).read_bytes()).hexdigest()
    print(json.dumps({"bytes": Path(out).stat().st_size, "sha256": digest}))


def run(db: Path, work: Path, *, threads: int = 2) -> dict[str, object]:
    """Measure the three writers on ``db`` (files go to ``work``); print the table and ratios."""
    db_mb = db.stat().st_size / 1e6

    def one(label: str, mode: str) -> Measurement:
        command = [
            sys.executable,
            "-m",
            "benchmarks.trivy_layer",
            "--write",
            mode,
            str(db),
            str(work / f"{mode}.tar.gz"),
        ]
        return measure(label, command, items=1, megabytes=db_mb)

    stdlib = one("layer: stdlib gzip 6, one thread (before)", "stdlib")
    single = one("layer: gzipstream, threads=1", "1")
    multi = one(f"layer: gzipstream, threads={threads}", str(threads))
    outputs = {m.name: json.loads(m.output) for m in (stdlib, single, multi)}
    identical = outputs[single.name]["sha256"] == outputs[multi.name]["sha256"]
    print_table(
        f"Trivy layer of a {db_mb:,.1f} MB trivy.db (MB/s: of trivy.db)",
        [stdlib, single, multi],
        unit="layers",
    )
    sizes = ", ".join(f"{name.split(': ')[1]} {out['bytes'] / 1e6:,.1f} MB" for name, out in outputs.items())
    print(f"layer sizes: {sizes}")
    print(f"threads={threads} layer byte-identical to threads=1: {identical}")
    print(ratio_line("threads=1 / stdlib", single, stdlib))
    print(ratio_line(f"threads={threads} / threads=1", multi, single))
    return {
        "db_bytes": db.stat().st_size,
        "stdlib": stdlib.__dict__,
        "threads1": single.__dict__,
        "threadsN": multi.__dict__,
        "identical": identical,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", type=Path, help="a trivy.db (e.g. data/db/trivy.db of a trivy:db bundle)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write", nargs=3, metavar=("MODE", "DB", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write:
        layer_main(*args.write)
        return
    if args.db is None:
        parser.error("--db is required")
    with tempfile.TemporaryDirectory(prefix="stella-bench-layer-") as work:
        run(args.db, Path(work), threads=args.threads)


if __name__ == "__main__":
    main()
