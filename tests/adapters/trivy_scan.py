"""Reusable end-to-end helpers: build a Trivy DB folder, scan an SBOM, compare findings.

The DB-building part is a stand-in for the export pipeline (which will later produce
the same ``db/`` folder); scanning and comparison are what the end-to-end tests keep.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from stella.adapters.trivy.bbolt import write_bolt
from stella.adapters.trivy.osv import TrivyEntry, merge_value
from stella.canonical import dumps
from tests.adapters.trivy_oracle import Component, Finding, explain

__all__ = [
    "METADATA",
    "compare_findings",
    "findings_context",
    "merge_entries",
    "sbom_components",
    "scan_sbom",
    "write_trivy_db",
]

# Version 2 with a far-future NextUpdate: Trivy uses the DB as is (trivy-formats.md C.2).
METADATA = {
    "Version": 2,
    "NextUpdate": "2099-01-01T00:00:00Z",
    "UpdatedAt": "2026-01-01T00:00:00Z",
    "DownloadedAt": "2026-01-01T00:00:00Z",
}


def merge_entries(entries: Iterable[TrivyEntry]) -> dict[tuple[str, ...], Any]:
    """One value per ``bucket + (key,)``, duplicates merged with :func:`merge_value`."""
    merged: dict[tuple[str, ...], Any] = {}
    for entry in entries:
        ident = (*entry.bucket, entry.key)
        merged[ident] = (
            entry.value if ident not in merged else merge_value(entry.bucket, merged[ident], entry.value)
        )
    return merged


def write_trivy_db(cache_dir: Path, entries: Iterable[TrivyEntry]) -> Path:
    """``<cache_dir>/db/trivy.db`` + ``metadata.json`` from adapter entries."""
    db_dir = cache_dir / "db"
    db_dir.mkdir(parents=True, exist_ok=True)
    merged = merge_entries(entries)
    rows = [
        (tuple(part.encode() for part in ident[:-1]), ident[-1].encode(), dumps(value))
        for ident, value in merged.items()
    ]
    if not any(row[0] == (b"vulnerability",) for row in rows):
        raise AssertionError("no vulnerability bucket: Trivy would panic on the first finding")
    # The writer takes entries in bbolt's depth-first order: sorted by bucket path + key.
    write_bolt(db_dir / "trivy.db", sorted(rows, key=lambda row: (*row[0], row[1])))
    (db_dir / "metadata.json").write_text(json.dumps(METADATA))
    return db_dir


def sbom_components(sbom: Mapping[str, Any]) -> list[Component]:
    """The components Trivy scans in a CycloneDX SBOM, named as Trivy reports them (E.1).

    Top-level ``components`` and ``metadata.component`` only; a component needs a purl
    with a version. Maven is named ``namespace:name`` from the purl; everything else
    ``group/name`` (or ``name``) from the component; the version comes from the purl.
    """
    candidates = list(sbom.get("components") or [])
    meta = (sbom.get("metadata") or {}).get("component")
    if meta:
        candidates.append(meta)
    out: list[Component] = []
    for comp in candidates:
        purl = comp.get("purl")
        if not isinstance(purl, str) or not purl.startswith("pkg:") or "@" not in purl:
            continue
        body = purl[4:].split("?", 1)[0].split("#", 1)[0]
        ptype, _, rest = body.partition("/")
        path, _, version = rest.rpartition("@")
        version = unquote(version)
        if not version:
            continue
        if ptype == "maven":
            namespace, _, name = path.rpartition("/")
            out.append(Component(f"{unquote(namespace).replace('/', '.')}:{unquote(name)}", version, ptype))
        else:
            group, name = comp.get("group") or "", comp.get("name") or ""
            out.append(Component(f"{group}/{name}" if group else name, version, ptype))
    return out


def scan_sbom(
    trivy: str, cache_dir: Path, sbom: Path, *, home: Path | None = None, extra: Sequence[str] = ()
) -> set[Finding]:
    """Run the real Trivy offline on ``sbom``; return (PkgName, InstalledVersion, VulnerabilityID).

    ``extra`` adds arguments (``--vex FILE``...).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIVY_")}
    env["HOME"] = str(home or cache_dir / "home")
    proc = subprocess.run(
        [
            trivy, "sbom", "--skip-db-update", "--skip-java-db-update", "--offline-scan",
            "--cache-dir", str(cache_dir), "--format", "json", "--quiet", *extra, str(sbom),
        ],
        capture_output=True, text=True, env=env, check=False, timeout=600,
    )  # fmt: skip
    if proc.returncode != 0:
        raise AssertionError(f"trivy failed ({proc.returncode}) on {sbom.name}:\n{proc.stderr[-4000:]}")
    report = json.loads(proc.stdout)
    found: set[Finding] = set()
    for result in report.get("Results") or []:
        for vuln in result.get("Vulnerabilities") or []:
            found.add((vuln["PkgName"], vuln["InstalledVersion"], vuln["VulnerabilityID"]))
    return found


def findings_context(records: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Vulnerability id → the records reported under it (for explaining divergences)."""
    ctx: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        ids = [record["id"], *(record.get("aliases") or [])]
        for vid in sorted({i for i in ids if i.startswith("CVE-")}) or [record["id"]]:
            ctx.setdefault(vid, []).append(record)
    return ctx


def compare_findings(
    actual: set[Finding], expected: set[Finding], context: Mapping[str, list[Mapping[str, Any]]]
) -> tuple[str | None, dict[str, int]]:
    """A readable diff of unexplained differences (None when equal), and accepted counts per divergence."""
    accepted: dict[str, int] = {}
    unexplained: list[str] = []
    for side, items in (("trivy-only", actual - expected), ("oracle-only", expected - actual)):
        for finding in sorted(items):
            divergence = explain(finding, side, context)
            if divergence is None:
                unexplained.append(f"  {side:12} {finding[0]} {finding[1]} {finding[2]}")
            else:
                accepted[divergence.name] = accepted.get(divergence.name, 0) + 1
    if not unexplained:
        return None, accepted
    header = f"{len(unexplained)} unexplained difference(s) (trivy {len(actual)}, oracle {len(expected)}):"
    return "\n".join([header, *unexplained]), accepted
