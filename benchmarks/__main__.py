"""``python -m benchmarks``: every benchmark, each beside its in-run baseline.

    python -m benchmarks                    # the issue sizes: 1,000,000 documents, 1 GB payloads
    python -m benchmarks --records 100000   # a quicker pass
    python -m benchmarks --only json_raw    # one of: json_raw, trivy_db, ingest, policy_findings, mirror,
                                            # mirror_rebuild, sign_encrypt,
                                            # encryption, service_load

Ledgers are generated once and cached under .cache/bench (STELLA_BENCH_CACHE).
"""

from __future__ import annotations

import argparse

from benchmarks import (
    encryption_overhead,
    ingest,
    json_raw,
    mirror,
    mirror_rebuild,
    policy_findings,
    service_load,
    sign_encrypt,
    trivy_db,
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--records", type=int, default=1_000_000, help="ledger size for the export benchmarks"
    )
    parser.add_argument(
        "--mb", type=int, default=1024, help="payload size for the signing/encryption benchmarks"
    )
    parser.add_argument(
        "--only",
        choices=[
            "json_raw",
            "trivy_db",
            "ingest",
            "policy_findings",
            "mirror",
            "mirror_rebuild",
            "sign_encrypt",
            "encryption",
            "service_load",
        ],
    )
    args = parser.parse_args()
    runs = {
        "json_raw": lambda: json_raw.run(args.records),
        "trivy_db": lambda: trivy_db.run(args.records),
        "ingest": lambda: ingest.run(args.records),
        "policy_findings": lambda: policy_findings.run(sboms=args.records // 100, advisories=args.records),
        "mirror": lambda: mirror.run(args.records),
        "mirror_rebuild": lambda: print(mirror_rebuild.run(args.records, trace=False)),
        "sign_encrypt": lambda: sign_encrypt.run(args.mb),
        "encryption": lambda: print(encryption_overhead.table(encryption_overhead.run(args.mb))),
        "service_load": lambda: service_load.run(min(args.records, 20_000)),
    }
    for name, run in runs.items():
        if args.only in (None, name):
            print(f"\n=== {name} ===", flush=True)
            run()


if __name__ == "__main__":
    main()
