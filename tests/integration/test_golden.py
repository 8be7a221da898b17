"""A golden bundle: a small hand-written ledger must export to exactly these bytes.

Any change to canonical JSON, record envelopes, sharding, compression, manifest or
provenance shows up here as a diff. Regenerate deliberately with
``STELLA_UPDATE_GOLDEN=1 ./bootstrap.sh test tests/integration/test_golden.py``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tests.support import REPO, export, ingest, stella_cli, tree_digests

GOLDEN = REPO / "tests" / "golden" / "json-raw-small"

DOCUMENTS = {
    "osv.jsonl": "\n".join(
        json.dumps(doc)
        for doc in [
            {
                "schema_version": "1.6.0",
                "id": "GOLD-2024-1",
                "modified": "2024-03-01T10:00:00Z",
                "aliases": ["CVE-2024-0001"],
                "summary": "Ünïcode summary — with a dash",
                "affected": [
                    {
                        "package": {"ecosystem": "PyPI", "name": "golden-pkg", "purl": "pkg:pypi/golden-pkg"},
                        "ranges": [
                            {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.2.3"}]}
                        ],
                    }
                ],
                "database_specific": {"score": 7.5, "big": 12345678901234},
            },
            {
                "id": "GOLD-2024-2",
                "modified": "2024-05-01T00:00:00.5+02:00",
                "details": "two revisions of GOLD-2024-1 follow",
                "affected": [{"package": {"ecosystem": "Go", "name": "example.com/golden"}}],
            },
            {
                "schema_version": "1.6.0",
                "id": "GOLD-2024-1",
                "modified": "2024-04-01T10:00:00Z",
                "summary": "revised",
                "affected": [],
            },
        ]
    ),
    "sbom.cdx.json": json.dumps(
        {
            "bomFormat": "CycloneDX",
            "specVersion": "1.5",
            "serialNumber": "urn:uuid:00000000-0000-4000-8000-000000000001",
            "version": 1,
            "metadata": {
                "timestamp": "2024-02-01T00:00:00Z",
                "component": {"type": "application", "name": "golden-app", "version": "1.0"},
            },
            "components": [
                {
                    "type": "library",
                    "name": "golden-pkg",
                    "version": "1.0.0",
                    "purl": "pkg:pypi/golden-pkg@1.0.0",
                }
            ],
        },
        indent=2,
    ),
    "vex.openvex.json": json.dumps(
        {
            "@context": "https://openvex.dev/ns/v0.2.0",
            "@id": "https://example.com/vex/golden-1",
            "author": "golden",
            "timestamp": "2024-02-02T00:00:00Z",
            "version": 1,
            "statements": [
                {
                    "vulnerability": {"name": "CVE-2024-0001"},
                    "products": [{"@id": "pkg:pypi/golden-pkg@1.0.0"}],
                    "status": "not_affected",
                    "justification": "vulnerable_code_not_in_execute_path",
                }
            ],
        }
    ),
}


def test_small_ledger_exports_to_the_golden_bundle(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name, text in DOCUMENTS.items():
        (inputs / name).write_text(text, encoding="utf-8")
    ledger = tmp_path / "ledger"
    ingest(ledger, inputs, tenant="golden")
    bundle = export(ledger, tmp_path / "out", tenant="golden")
    if os.environ.get("STELLA_UPDATE_GOLDEN") == "1":
        shutil.rmtree(GOLDEN, ignore_errors=True)
        shutil.copytree(bundle, GOLDEN)
    assert GOLDEN.is_dir(), "no golden bundle yet: run with STELLA_UPDATE_GOLDEN=1"
    assert bundle.name == json.loads((GOLDEN / "export.json").read_bytes())["exportId"]
    for name in ("export.json", "provenance.json"):
        assert (bundle / name).read_text() == (GOLDEN / name).read_text(), name
    assert tree_digests(bundle) == tree_digests(GOLDEN)
    assert stella_cli("export", "verify", str(GOLDEN)).returncode == 0
