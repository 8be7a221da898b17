"""What encrypting a mirror payload costs, beside an in-run baseline of copy + SHA-256.

    python -m benchmarks.encryption_overhead --mb 1024

builds an ``--mb`` MiB JSONL payload shaped like real advisories (OSV records from the
shared data set, re-identified so the file does not just repeat one block; synthetic
records if the data set is absent) in a temp folder, then runs each operation in a fresh
interpreter so its peak RSS is its own:

* ``baseline``      read, write a copy and SHA-256 it, 1 MiB at a time;
* ``aes-gcm enc``   chunked AES-256-GCM (per-file HKDF key) + SHA-256 of plaintext and ciphertext;
* ``aes-gcm dec``   authenticate and decrypt + SHA-256 of both sides;
* ``age enc``/``age dec``  pyrage (ChaCha20-Poly1305 STREAM) + SHA-256 of both sides.

The encryption rows hash both sides because a real run records both digests; the
baseline hashes once, so the ratio slightly overstates the cipher's own cost.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

__all__ = ["OPERATIONS", "make_payload", "peak_rss_kib", "run"]

REPO: Final = Path(__file__).resolve().parents[1]
SHARED_ADVISORIES: Final = REPO.parent / "shared" / "data" / "advisories"
_BLOCK: Final = 1 << 20
RUN_ID: Final = "bench-run"
REL_PATH: Final = "data/advisories/part-00000.jsonl"


def _records_from_shared() -> list[bytes]:
    """Real OSV lines, if the shared data set is next to the repository."""
    if not SHARED_ADVISORIES.is_dir():
        return []
    import zstandard

    lines: list[bytes] = []
    for path in sorted(SHARED_ADVISORIES.glob("*.jsonl.zst")):
        with path.open("rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as reader:
            lines.extend(line.rstrip(b"\n") for line in io.BufferedReader(reader) if line.strip())
    return lines


def _synthetic_records() -> list[bytes]:
    records = []
    for n in range(2000):
        record = {
            "id": f"GHSA-{n:04x}-syn-{n * 7 % 9973:04x}",
            "modified": f"2024-{n % 12 + 1:02d}-{n % 28 + 1:02d}T00:00:00Z",
            "summary": f"Improper input validation in package-{n % 300} allows remote code execution",
            "affected": [{"package": {"ecosystem": "PyPI", "name": f"package-{n % 300}"},
                          "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": f"{n % 9}.{n % 17}.1"}]}]}],
            "references": [{"type": "ADVISORY", "url": f"https://example.invalid/advisories/{n}"}],
        }  # fmt: skip
        records.append(json.dumps(record, sort_keys=True, separators=(",", ":")).encode())
    return records


def _lines(records: list[bytes]) -> Iterator[bytes]:
    """Records cycled forever, each pass re-identified so long runs are not one repeated block."""
    passes = 0
    while True:
        suffix = b"-r%d" % passes
        for line in records:
            yield line.replace(b'"id":"', b'"id":"' + suffix[1:] + b"-", 1) + b"\n"
        passes += 1


def make_payload(path: Path, mb: int) -> int:
    """Write about ``mb`` MiB of advisory-like JSONL to ``path``; returns its exact size."""
    target = mb << 20
    records = _records_from_shared() or _synthetic_records()
    written = 0
    with path.open("wb") as out:
        batch: list[bytes] = []
        size = 0
        for line in _lines(records):
            batch.append(line)
            size += len(line)
            if size >= _BLOCK or written + size >= target:
                out.write(b"".join(batch))
                written += size
                batch, size = [], 0
                if written >= target:
                    break
    return written


def peak_rss_kib() -> int:
    """This process's own peak RSS.

    Linux keeps ``ru_maxrss`` across ``execve``, so a child started by a big parent would
    report the parent's peak; ``VmHWM`` belongs to the new address space and does not.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# --- operations: each runs in its own interpreter ------------------------------------------


def _baseline(src: Path, dst: Path, _: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    with src.open("rb") as reader, dst.open("wb") as writer:
        while block := reader.read(_BLOCK):
            writer.write(block)
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def _dek() -> bytes:
    return hashlib.sha256(b"benchmark data key, not a secret").digest()


def _aes_encrypt(src: Path, dst: Path, _: dict[str, Any]) -> str:
    from stella.encryption import aesgcm

    with src.open("rb") as reader, dst.open("wb") as writer:
        return aesgcm.encrypt_stream(
            reader, writer, dek=_dek(), run_id=RUN_ID, path=REL_PATH
        ).ciphertext_digest


def _aes_decrypt(src: Path, dst: Path, _: dict[str, Any]) -> str:
    from stella.encryption import aesgcm

    with src.open("rb") as reader, dst.open("wb") as writer:
        return aesgcm.decrypt_stream(
            reader, writer, dek=_dek(), run_id=RUN_ID, path=REL_PATH
        ).plaintext_digest


def _age_encrypt(src: Path, dst: Path, keys: dict[str, Any]) -> str:
    from stella.encryption.age_mode import encrypt_stream_age
    from stella.encryption.recipients import parse_recipient

    with src.open("rb") as reader, dst.open("wb") as writer:
        return encrypt_stream_age(reader, writer, [parse_recipient(keys["age_public"])]).ciphertext_digest


def _age_decrypt(src: Path, dst: Path, keys: dict[str, Any]) -> str:
    from stella.encryption.age_mode import decrypt_stream_age
    from stella.encryption.recipients import parse_identities

    with src.open("rb") as reader, dst.open("wb") as writer:
        return decrypt_stream_age(
            reader, writer, parse_identities(keys["age_secret"].encode())
        ).plaintext_digest


# name -> (function, input file key, output file key)
OPERATIONS: Final[dict[str, tuple[Callable[[Path, Path, dict[str, Any]], str], str, str]]] = {
    "baseline copy+sha256": (_baseline, "plain", "copy"),
    "aes-gcm encrypt": (_aes_encrypt, "plain", "aes"),
    "aes-gcm decrypt": (_aes_decrypt, "aes", "aes.out"),
    "age encrypt": (_age_encrypt, "plain", "age"),
    "age decrypt": (_age_decrypt, "age", "age.out"),
}


def _child(name: str, src: str, dst: str, keys_json: str) -> None:
    """Entry point of the per-operation interpreter: one JSON line on stdout."""
    function = OPERATIONS[name][0]
    # Import every operation's modules before the clock starts, so all rows pay the same
    # start-up memory and no row's time includes an import.
    for module in ("stella.encryption.aesgcm", "stella.encryption.age_mode", "pyrage"):
        importlib.import_module(module)
    before = peak_rss_kib()
    started, cpu_started = time.perf_counter(), time.process_time()
    digest = function(Path(src), Path(dst), json.loads(keys_json))
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    peak = peak_rss_kib()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "peak_rss_kib": peak,
                "rss_at_start_kib": before,
                "digest": digest,
            }
        )
    )


def _run_child(name: str, src: Path, dst: Path, keys: dict[str, str]) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.encryption_overhead", "--child", name, str(src), str(dst), json.dumps(keys)],
        capture_output=True, text=True, env=env, cwd=str(REPO), check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"benchmark step {name!r} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(mb: int, *, workdir: Path | None = None) -> dict[str, Any]:
    """Time each operation on an ``mb`` MiB payload; returns rows plus the payload facts."""
    import pyrage

    identity = pyrage.x25519.Identity.generate()
    keys = {"age_public": str(identity.to_public()), "age_secret": str(identity)}
    with tempfile.TemporaryDirectory(prefix="stella-bench-", dir=workdir) as folder:
        files = {key: Path(folder) / key for key in ("plain", "copy", "aes", "aes.out", "age", "age.out")}
        size = make_payload(files["plain"], mb)
        rows: list[dict[str, Any]] = []
        for name, (_, src_key, dst_key) in OPERATIONS.items():
            measured = _run_child(name, files[src_key], files[dst_key], keys)
            measured.update(
                operation=name,
                mib_per_s=size / (1 << 20) / measured["seconds"],
                output_bytes=files[dst_key].stat().st_size,
            )
            rows.append(measured)
            if dst_key in ("copy", "aes.out", "age.out"):
                files[dst_key].unlink()  # keep disk use to ~3x the payload
        baseline = rows[0]["seconds"]
        for row in rows:
            row["time_vs_baseline"] = row["seconds"] / baseline
        plain_digest = rows[0]["digest"]
        round_trips_ok = all(r["digest"] == plain_digest for r in rows if r["operation"].endswith("decrypt"))
    return {"payload_bytes": size, "round_trips_ok": round_trips_ok, "rows": rows}


def table(report: dict[str, Any]) -> str:
    lines = [
        f"payload: {report['payload_bytes'] / (1 << 20):.0f} MiB advisory JSONL; "
        f"decrypt round trips match: {report['round_trips_ok']}",
        f"{'operation':<22} {'seconds':>8} {'cpu s':>6} {'MiB/s':>8} {'x baseline':>10} {'peak RSS MiB':>13} {'RSS growth MiB':>15} {'output MiB':>11}",
    ]
    lines.extend(
        f"{row['operation']:<22} {row['seconds']:>8.2f} {row['cpu_seconds']:>6.2f} {row['mib_per_s']:>8.0f} "
        f"{row['time_vs_baseline']:>10.2f} {row['peak_rss_kib'] / 1024:>13.1f} "
        f"{(row['peak_rss_kib'] - row['rss_at_start_kib']) / 1024:>15.1f} {row['output_bytes'] / (1 << 20):>11.1f}"
        for row in report["rows"]
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.encryption_overhead", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--mb", type=int, default=1024, help="payload size in MiB (default 1024)")
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to put the temp folder (default: system temp)"
    )
    parser.add_argument("--json", action="store_true", help="print the raw report as JSON")
    parser.add_argument("--child", nargs=4, metavar=("OP", "SRC", "DST", "KEYS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child)
        return 0
    report = run(args.mb, workdir=args.dir)
    print(json.dumps(report, indent=2) if args.json else table(report))
    return 0 if report["round_trips_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
