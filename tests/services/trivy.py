"""The real Trivy 0.76 binary, run in isolation, and the "opaque jar" scenario it scans.

The scenario is the one the Java DB exists for: a jar with only a MANIFEST (no
``pom.properties``, no identifying manifest attributes, a file name that is not
``<artifactId>-<version>.jar``), so Trivy can only identify it by its SHA-1
(research ``trivy-formats.md`` §E.3), plus a CycloneDX SBOM that declares that SHA-1
for a Maven purl, and one ``maven::`` advisory for the coordinates.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = [
    "AS_OF",
    "MAVEN_BUCKET",
    "JarScenario",
    "advisory_entries",
    "build_trivy_dbs",
    "findings",
    "make_scenario",
    "run_trivy",
]

# An injected as-of, deliberately long past: nothing may depend on the machine's clock.
AS_OF = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
MAVEN_BUCKET = b"maven::GitHub Security Advisory Maven"
_MAVEN_SOURCE = {
    "ID": "ghsa",
    "Name": "GitHub Security Advisory Maven",
    "URL": "https://github.com/advisories?query=type%3Areviewed+ecosystem%3Amaven",
}


@dataclass(frozen=True, slots=True)
class JarScenario:
    group: str
    artifact: str
    version: str
    vuln_id: str
    fixed: str
    scan_dir: Path
    jar_sha1: str
    sbom: Mapping[str, Any]


def _opaque_jar() -> bytes:
    """A valid jar holding only a manifest that names nothing, with fixed zip timestamps."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo("META-INF/MANIFEST.MF", date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, "Manifest-Version: 1.0\r\nCreated-By: stella-tests\r\n\r\n")
    return buffer.getvalue()


def make_scenario(root: Path) -> JarScenario:
    """Write ``root/scan/lib/opaque-component.jar`` and return the SBOM that describes it."""
    group, artifact, version = "org.example.stella", "widget-core", "1.4.2"
    scan_dir = root / "scan"
    (scan_dir / "lib").mkdir(parents=True)
    jar = _opaque_jar()
    (scan_dir / "lib" / "opaque-component.jar").write_bytes(jar)
    sha1 = hashlib.sha1(jar).hexdigest()  # the jar's own SHA-1: what Trivy looks up
    sbom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "components": [
            {
                "type": "library",
                "group": group,
                "name": artifact,
                "version": version,
                "purl": f"pkg:maven/{group}/{artifact}@{version}?type=jar",
                "hashes": [{"alg": "SHA-1", "content": sha1}],
            },
            {"type": "library", "name": "no-purl-component", "version": "1.0"},
        ],
    }
    return JarScenario(group, artifact, version, "GHSA-stel-la00-test", "1.5.0", scan_dir, sha1, sbom)


def advisory_entries(scenario: JarScenario) -> list[tuple[tuple[bytes, ...], bytes, bytes]]:
    """trivy.db entries (bucket path, key, value) for one Maven advisory, sorted for ``write_bolt``."""
    package = f"{scenario.group}:{scenario.artifact}".lower().encode()
    entries = [
        ((b"data-source",), MAVEN_BUCKET, json.dumps(_MAVEN_SOURCE).encode()),
        (
            (MAVEN_BUCKET, package),
            scenario.vuln_id.encode(),
            json.dumps(
                {"VulnerableVersions": [f"<{scenario.fixed}"], "PatchedVersions": [scenario.fixed]}
            ).encode(),
        ),
        (
            (b"vulnerability",),
            scenario.vuln_id.encode(),
            json.dumps({"Title": "test advisory", "VendorSeverity": {"ghsa": 3}}).encode(),
        ),
    ]
    return sorted(entries, key=lambda entry: (*entry[0], entry[1]))


def build_trivy_dbs(scenario: JarScenario, out: Path, *, java_rows: bool = True) -> dict[str, Path]:
    """Build both DBs with stella's writers: ``out/db/*`` and ``out/java-db/*``.

    ``java_rows=False`` writes an empty Java DB: the control showing that the finding
    comes from the SHA-1 row and from nothing else Trivy could infer.

    The metadata carries ``DownloadedAt`` = the as-of, so these folders can be copied
    straight into a Trivy cache (see ``trivy_metadata``).
    """
    from stella.adapters.trivy.artifact import trivy_metadata
    from stella.adapters.trivy.bbolt import write_bolt
    from stella.adapters.trivy.javadb import java_db_metadata, java_index_rows, write_java_db

    db_dir, java_dir = out / "db", out / "java-db"
    db_dir.mkdir(parents=True)
    java_dir.mkdir(parents=True)
    write_bolt(db_dir / "trivy.db", advisory_entries(scenario))
    (db_dir / "metadata.json").write_bytes(trivy_metadata(AS_OF, AS_OF + timedelta(hours=24), AS_OF))
    rows, _ = java_index_rows(scenario.sbom, "cyclonedx")
    write_java_db(java_dir / "trivy-java.db", rows if java_rows else [])
    (java_dir / "metadata.json").write_bytes(java_db_metadata(AS_OF, downloaded_at=AS_OF))
    return {"db": db_dir, "java-db": java_dir}


def run_trivy(trivy: str, args: Sequence[str], home: Path) -> dict[str, Any]:
    """Run Trivy with a private HOME and no inherited TRIVY_* settings; return its JSON report."""
    home.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRIVY_")}
    env.update({"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "NO_COLOR": "1"})
    result = subprocess.run(
        [trivy, *args, "--format", "json", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"trivy {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def findings(report: Mapping[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """(target, package, installed, id, fixed, severity) per finding, sorted: comparable across runs."""
    return sorted(
        (
            str(vuln.get("PkgPath") or result.get("Target")),
            vuln["PkgName"],
            vuln["InstalledVersion"],
            vuln["VulnerabilityID"],
            vuln.get("FixedVersion", ""),
            vuln.get("Severity", ""),
        )
        for result in report.get("Results") or []
        for vuln in result.get("Vulnerabilities") or []
    )
