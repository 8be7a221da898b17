"""json:policy findings: the Beam joins beside a plain-Python dictionary join of the same inputs, in one run.

    python -m benchmarks.policy_findings --sboms 10000 --advisories 1000000
    python -m benchmarks.policy_findings --sboms 500 --advisories 50000     # a quick pass

1. Synthetic inputs, deterministic in ``--seed``: ``--advisories`` OSV records over a
   universe of packages in four ecosystems (PyPI, npm, Go, Maven), each with one range,
   and ``--sboms`` CycloneDX SBOMs of ``--components`` components drawn from the same
   universe with versions around the ranges. Ingested once into a cached ledger with a
   pass-all policy snapshot (untimed).
2. ``stella export run --profile json:policy`` in its own process: wall time, findings/s,
   peak RSS. The whole bundle is built: the json:raw payload, the joins, the finding
   shards and Parquet, manifest and provenance.
3. The baseline, in its own process: the same segments read, the same pure functions
   (components, latest advisory revisions, version matching) joined in two Python
   dictionaries, findings counted -- no Beam, no sorting, nothing written. Its count must
   equal the export's (checked).
4. ``--profile json:raw`` of the same ledger: the payload part of the bundle, so the
   findings' own cost (json:policy minus json:raw) can be read beside the baseline's.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks.common import BIN, CACHE, Measurement, measure, print_table, ratio_line

__all__ = ["baseline_main", "run"]

_ECOSYSTEMS = (("PyPI", "pypi"), ("npm", "npm"), ("Go", "golang"), ("Maven", "maven"))
_POLICY = (
    "apiVersion: stella.policy/v1\nkind: Policy\nmetadata: {name: bench}\nrules: [{id: all, verdict: pass}]\n"
)


def _package(index: int) -> tuple[str, str, str]:
    """(OSV ecosystem, OSV name, purl without version) of package ``index``."""
    osv, ptype = _ECOSYSTEMS[index % len(_ECOSYSTEMS)]
    if osv == "Maven":
        return osv, f"org.bench{index}:lib{index}", f"pkg:maven/org.bench{index}/lib{index}"
    if osv == "Go":
        return osv, f"example.com/bench{index}/lib", f"pkg:golang/example.com/bench{index}/lib"
    return osv, f"bench-pkg-{index}", f"pkg:{ptype}/bench-pkg-{index}"


def write_inputs(folder: Path, sboms: int, advisories: int, components: int, seed: int) -> None:
    rng = random.Random(seed)
    universe = max(1, advisories // 4)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "advisories.jsonl").open("w") as out:
        for i in range(advisories):
            osv, name, _purl = _package(i % universe)
            low = rng.randrange(0, 8)
            out.write(json.dumps({
                "id": f"BENCH-{i:08d}", "modified": "2026-01-01T00:00:00Z", "published": "2025-01-01T00:00:00Z",
                "aliases": [f"CVE-2099-{i:07d}"],
                "affected": [{"package": {"ecosystem": osv, "name": name}, "ranges": [{"type": "ECOSYSTEM", "events": [
                    {"introduced": f"1.{low}.0"}, {"fixed": f"1.{low + rng.randrange(1, 4)}.0"}]}]}],
                "database_specific": {"severity": "HIGH"},
            }) + "\n")  # fmt: skip
    with (folder / "sboms.jsonl").open("w") as out:
        for s in range(sboms):
            picked = rng.sample(range(universe), min(components, universe))
            comps = []
            for index in picked:
                _osv, _name, purl = _package(index)
                version = (
                    f"v1.{rng.randrange(0, 12)}.0"
                    if purl.startswith("pkg:golang")
                    else f"1.{rng.randrange(0, 12)}.0"
                )
                comps.append({"type": "library", "name": purl.rsplit("/", 1)[-1], "version": version,
                              "purl": f"{purl}@{version}", "bom-ref": f"c{index}"})  # fmt: skip
            out.write(json.dumps({
                "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
                "serialNumber": f"urn:uuid:00000000-0000-4000-8000-{s:012d}",
                "metadata": {"timestamp": "2026-02-01T00:00:00Z", "component": {"type": "application", "name": f"app{s}"}},
                "components": comps,
            }) + "\n")  # fmt: skip


def _ledger(sboms: int, advisories: int, components: int, seed: int) -> tuple[Path, str]:
    import subprocess

    root = CACHE / f"policy-{sboms}-{advisories}-{components}-{seed}"
    marker = root / "COMPLETE"
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        inputs = root / "inputs"
        write_inputs(inputs, sboms, advisories, components, seed)
        subprocess.run([str(BIN / "stella"), "-q", "ledger", "ingest", "--tenant", "bench", "--ledger", str(root / "ledger"),
                        "--ingested-at", "2026-11-27T00:00:00Z", str(inputs)], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        shutil.rmtree(inputs)
        (root / "policy.yaml").write_text(_POLICY)
        published = subprocess.run([str(BIN / "stella"), "policy", "publish", str(root / "policy.yaml"), "--tenant", "bench",
                                    "--ledger", str(root / "ledger")], check=True, capture_output=True, text=True)  # fmt: skip
        (root / "snapshot").write_text(published.stdout.strip())
        marker.write_text("ok")
    return root / "ledger", (root / "snapshot").read_text()


def baseline_main(ledger: str) -> None:
    """The same joins as plain dictionaries over the same segments (no Beam, nothing written)."""
    from stella.adapters.trivy.dbitems import is_osv_advisory
    from stella.findings.advisories import advisory_affected, latest_revisions
    from stella.findings.components import is_sbom_record, sbom_components
    from stella.findings.match import affects
    from stella.ledger.store import LedgerStore

    store = LedgerStore(ledger)
    components, advisories = [], []
    for record in store.read("bench"):
        if is_sbom_record(record):
            components.extend(sbom_components(record))
        elif is_osv_advisory(record):
            advisories.append(record)
    index: dict[tuple[str, str], list[object]] = {}
    for record in latest_revisions(advisories):
        for item in advisory_affected(record):
            index.setdefault(item.key, []).append(item)
    found = set()
    for comp in components:
        for item in index.get(comp.ref.key, ()):
            if affects(item, comp.version):  # type: ignore[arg-type]
                found.update((comp.sbom, comp.ref.purl, vid) for vid in item.ids)  # type: ignore[attr-defined]
    print(json.dumps({"findings": len(found)}))


def run(
    sboms: int, advisories: int, components: int = 50, seed: int = 11, workers: int | None = None
) -> dict[str, object]:
    ledger, snapshot = _ledger(sboms, advisories, components, seed)
    work = Path(tempfile.mkdtemp(prefix="stella-bench-policy-"))
    try:

        def command(profile: str, *options: str) -> list[str]:
            return [str(BIN / "stella"), "-q", "export", "run", "--tenant", "bench", "--ledger", str(ledger),
                    "--profile", profile, *options, "--out", str(work), "--json",
                    *(["--workers", str(workers)] if workers else [])]  # fmt: skip

        export = measure(
            "json:policy export (Beam, " + (f"{workers} workers" if workers else "in process") + ")",
            command("json:policy", "--option", f"policy-snapshot={snapshot}"),
            items=0,
        )
        manifest = json.loads((Path(json.loads(export.output)["bundle"]) / "export.json").read_text())
        findings = int(manifest["policy"]["findings"])
        baseline = measure("plain-dict join (same functions, no Beam)",
                           [sys.executable, "-m", "benchmarks.policy_findings", "--baseline", str(ledger)], items=0)  # fmt: skip
        raw = measure("json:raw export of the same ledger", command("json:raw"), items=0)
        counted = json.loads(baseline.output)["findings"]
        if counted != findings:
            raise SystemExit(f"baseline found {counted} findings, the export {findings}")
        rows = [
            Measurement(m.name, m.seconds, m.peak_rss_mb, findings, 0.0, "", m.cpu_seconds)
            for m in (export, baseline, raw)
        ]
        title = f"{sboms} SBOMs x {components} components, {advisories} advisories: {findings} findings"
        print_table(title, rows, unit="findings")
        print(ratio_line("export / plain-dict join", rows[0], rows[1], target=">= 0.5"))
        print(f"findings' own CPU (json:policy - json:raw): {export.cpu_seconds - raw.cpu_seconds:.2f} s "
              f"against the plain-dict join's {baseline.cpu_seconds:.2f} s")  # fmt: skip
        return {"findings": findings, "export": rows[0], "baseline": rows[1], "raw": rows[2]}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sboms", type=int, default=10_000)
    parser.add_argument("--advisories", type=int, default=1_000_000)
    parser.add_argument("--components", type=int, default=50)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--baseline", metavar="LEDGER", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline:
        baseline_main(args.baseline)
        return
    run(args.sboms, args.advisories, args.components, args.seed, args.workers)


if __name__ == "__main__":
    main()
