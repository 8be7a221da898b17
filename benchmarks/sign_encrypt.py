"""What signing and encrypting cost on a real export of a ~1 GiB payload, beside the unencrypted export.

    python -m benchmarks.sign_encrypt --mb 1024

Builds (once, cached) a ledger of synthetic CycloneDX SBOMs sized so that the json:raw
payload is about ``--mb`` MiB -- SBOMs carry random component hashes, so the payload
compresses like real SBOM exports and the record count stays small enough to build the
ledger in minutes -- then runs, each in its own process (wall time, peak RSS):

* ``export``                     plain json:raw export (the baseline);
* ``export --sign-key``          + provenance, DSSE envelopes, cosign blob signature (ECDSA P-256);
* ``export --sign-key --encrypt-to age1…``           + age encryption of data/;
* ``export --sign-key --encrypt-to rsa:… (aes-gcm)`` + chunked AES-256-GCM, DEK wrapped with RSA-OAEP;
* ``finish`` alone, in its own process, on a hard-linked copy of the plain bundle: the
  driver-side step that signing and encryption add (provenance + signatures, with and
  without encrypting ``data/``), without the export's run-to-run noise;
* ``verify --key`` of the signed and of the age-encrypted bundle, and ``decrypt`` of both
  encrypted bundles (the receiving side), checking that decryption restores the exact
  plaintext payload of the unencrypted export.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, Final

from benchmarks.common import BIN, CACHE, Measurement, measure, print_table

__all__ = ["run", "sbom_ledger"]

# json:raw payload bytes one synthetic SBOM yields (measured: 10.4 MB from 200 SBOMs).
PAYLOAD_PER_SBOM: Final = 52_000
COMPONENTS: Final = 300
_TENANT: Final = "bench"


def _sbom(rng: random.Random, n: int) -> dict[str, Any]:
    components = []
    for i in range(COMPONENTS):
        group, name = f"org.example{rng.randrange(500)}", f"lib-{rng.randrange(5000)}"
        version = f"{rng.randrange(10)}.{rng.randrange(30)}.{rng.randrange(50)}"
        components.append({
            "type": "library", "group": group, "name": name, "version": version,
            "purl": f"pkg:maven/{group}/{name}@{version}", "bom-ref": f"ref-{n}-{i}",
            "hashes": [{"alg": "SHA-1", "content": rng.randbytes(20).hex()},
                       {"alg": "SHA-256", "content": rng.randbytes(32).hex()},
                       {"alg": "SHA-512", "content": rng.randbytes(64).hex()}],
            "licenses": [{"license": {"id": rng.choice(["Apache-2.0", "MIT", "BSD-3-Clause", "EPL-2.0"])}}],
        })  # fmt: skip
    return {
        "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
        "serialNumber": f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128))}",
        "metadata": {"timestamp": "2026-01-01T00:00:00Z",
                     "component": {"type": "application", "name": f"app-{n}", "version": "1.0.0", "bom-ref": f"app-{n}"}},
        "components": components,
    }  # fmt: skip


def sbom_ledger(mb: int, *, seed: int = 11) -> tuple[Path, int]:
    """A ledger of synthetic SBOMs for about ``mb`` MiB of payload, built once and cached."""
    count = max(1, (mb << 20) // PAYLOAD_PER_SBOM)
    root = CACHE / f"sbom-ledger-{mb}-{seed}"
    if (root / "COMPLETE").exists():
        return root, count
    shutil.rmtree(root, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    batch = 2000  # ingest in batches so the JSON input never needs more than ~350 MB of disk
    for start in range(0, count, batch):
        inputs = Path(tempfile.mkdtemp(prefix="stella-sboms-", dir=CACHE))
        try:
            for n in range(start, min(count, start + batch)):
                (inputs / f"app-{n:06d}.cdx.json").write_text(json.dumps(_sbom(rng, n)))
            subprocess.run(
                [str(BIN / "stella"), "ledger", "ingest", "--tenant", _TENANT, "--ledger", str(root),
                 "--ingested-at", "2026-11-27T00:00:00Z", str(inputs)],
                check=True, capture_output=True,
            )  # fmt: skip
        finally:
            shutil.rmtree(inputs, ignore_errors=True)
        print(f"  ledger: {min(count, start + batch)}/{count} SBOMs", file=sys.stderr)
    (root / "COMPLETE").write_text("ok\n")
    return root, count


def _keys(folder: Path) -> dict[str, str]:
    import pyrage
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    subprocess.run([str(BIN / "stella"), "keys", "generate", "--type", "ecdsa-p256", "--out", str(folder / "ec")],
                   check=True, capture_output=True)  # fmt: skip
    identity = pyrage.x25519.Identity.generate()
    (folder / "age.key").write_text(f"{identity}\n")
    private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    (folder / "rsa.key").write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (folder / "rsa.pub").write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return {"ec": str(folder / "ec.key"), "pub": str(folder / "ec.pub"), "age": str(identity.to_public()),
            "age_key": str(folder / "age.key"), "rsa_pub": str(folder / "rsa.pub"), "rsa_key": str(folder / "rsa.key")}  # fmt: skip


def finish_main(ledger: str, bundle: str, staging: str, key: str, recipient: str) -> None:
    """Child process: run :func:`finish_bundle` over a hard-linked copy of a finished bundle."""
    import os
    import time

    from pipelines.registry import get_profile
    from stella.bundle.encrypt import parse_encryption
    from stella.bundle.finish import finish_bundle
    from stella.bundle.request import ExportRequest
    from stella.ledger.store import LedgerStore
    from stella.selectors import parse_selectors
    from stella.signers.registry import load_signer

    shutil.copytree(bundle, staging, copy_function=os.link)  # encryption replaces links, never the originals
    shutil.rmtree(Path(staging) / "signatures", ignore_errors=True)
    request = ExportRequest(
        tenant=_TENANT, profile=get_profile("json:raw"), selectors=parse_selectors([]), ledger_root=ledger,
        segments=tuple(LedgerStore(ledger).require_segments(_TENANT)), out_dir=str(Path(staging).parent),
        encryption=parse_encryption([recipient] if recipient != "-" else []),
    )  # fmt: skip
    started = time.perf_counter()
    finish_bundle(Path(staging), request, signer=load_signer(key, environ={}))
    print(json.dumps({"seconds": time.perf_counter() - started}))


def _payload_digests(bundle: Path) -> dict[str, str]:
    digests = {}
    for path in sorted((bundle / "data").rglob("*")):
        if path.is_file():
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
            digests[path.relative_to(bundle).as_posix()] = digest.hexdigest()
    return digests


def run(mb: int) -> dict[str, Any]:
    ledger, docs = sbom_ledger(mb)
    work = Path(tempfile.mkdtemp(prefix="stella-bench-sign-", dir=CACHE))
    try:
        keys = _keys(work)
        stella = str(BIN / "stella")
        base = [
            stella,
            "export",
            "run",
            "--tenant",
            _TENANT,
            "--profile",
            "json:raw",
            "--ledger",
            str(ledger),
            "--json",
        ]
        variants = {
            "export (plain, baseline)": [],
            "export --sign-key": ["--sign-key", keys["ec"]],
            "export --sign-key, age": ["--sign-key", keys["ec"], "--encrypt-to", keys["age"]],
            "export --sign-key, aes-gcm": [
                "--sign-key",
                keys["ec"],
                "--encrypt-to",
                f"rsa:{keys['rsa_pub']}",
            ],
        }
        rows: list[Measurement] = []
        bundles: dict[str, Path] = {}
        payload_mb = 0.0
        for name, extra in variants.items():
            row = measure(name, [*base, "--out", str(work / f"out{len(rows)}"), *extra], items=docs)
            summary = json.loads(row.output)
            payload_mb = summary["bytes"] / 1e6
            bundles[name] = Path(summary["bundle"])
            rows.append(Measurement(row.name, row.seconds, row.peak_rss_mb, docs, payload_mb, row.output))
        plain_bundle = str(bundles["export (plain, baseline)"])
        for label, recipient in (
            ("finish: provenance + sign", "-"),
            ("finish: + age encrypt", keys["age"]),
            ("finish: + aes-gcm encrypt", f"rsa:{keys['rsa_pub']}"),
        ):
            staging = work / f"finish-{len(rows)}"
            rows.append(measure(label, [sys.executable, "-m", "benchmarks.sign_encrypt", "--finish", str(ledger),
                                        plain_bundle, str(staging), keys["ec"], recipient],
                                items=docs, megabytes=payload_mb))  # fmt: skip
            shutil.rmtree(staging, ignore_errors=True)
        receiving = [
            ("verify --key (signed)", [stella, "export", "verify", str(bundles["export --sign-key"]), "--key", keys["pub"]]),
            ("verify --key (age)", [stella, "export", "verify", str(bundles["export --sign-key, age"]), "--key", keys["pub"]]),
            ("decrypt (age)", [stella, "export", "decrypt", str(bundles["export --sign-key, age"]), "--identity",
                               keys["age_key"], "--out", str(work / "dec-age"), "--key", keys["pub"], "--json"]),
            ("decrypt (aes-gcm, RSA-OAEP)", [stella, "export", "decrypt", str(bundles["export --sign-key, aes-gcm"]),
                                            "--identity", keys["rsa_key"], "--out", str(work / "dec-aes"), "--key",
                                            keys["pub"], "--json"]),
        ]  # fmt: skip
        for name, command in receiving:
            rows.append(measure(name, command, items=docs, megabytes=payload_mb))
        plain = _payload_digests(bundles["export (plain, baseline)"])
        round_trip = all(
            _payload_digests(Path(json.loads(row.output)["bundle"])) == plain
            for row in rows
            if row.name.startswith("decrypt")
        )
        print_table(f"json:raw of {docs:,} SBOMs, payload {payload_mb:,.0f} MB", rows, unit="docs")
        baseline = rows[0].seconds
        ratios = {row.name: row.seconds / baseline for row in rows[1:4]}
        for name, ratio in ratios.items():
            print(
                f"{name:<34} {ratio:.2f}x the plain export's wall time (end to end, includes run-to-run noise)"
            )
        inner = {
            row.name: json.loads(row.output.strip().splitlines()[-1])["seconds"]
            for row in rows
            if row.name.startswith("finish")
        }
        for name, seconds in inner.items():
            rate = f" ({payload_mb / seconds:,.0f} MB/s)" if "encrypt" in name and seconds else ""
            print(
                f"{name:<34} {seconds:6.2f} s inside the step = {1 + seconds / baseline:.3f}x the plain export{rate}"
            )
        print(f"decrypted payload identical to the unencrypted export's: {round_trip}")
        return {
            "payloadMB": payload_mb,
            "documents": docs,
            "rows": [row.__dict__ | {"output": ""} for row in rows],
            "ratios": ratios,
            "finishSeconds": inner,
            "roundTrip": round_trip,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=int, default=1024, help="target payload size in MiB (default 1024)")
    parser.add_argument("--json", action="store_true", help="also print the raw figures as JSON")
    parser.add_argument("--finish", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.finish:
        finish_main(*args.finish)
        return
    report = run(args.mb)
    if args.json:
        print(json.dumps(report, indent=2))
    if not report["roundTrip"]:
        raise SystemExit("decryption did not restore the plaintext payload")


if __name__ == "__main__":
    main()
