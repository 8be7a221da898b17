"""Scheduled runs through the CLI, judged by their consumers: Trivy pulls what a schedule pushed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.adapters.trivy_scan import scan_sbom
from tests.integration.conftest import Ran
from tests.services.registry import Registry
from tests.services.trivy import findings, run_trivy
from tests.support import ingest, require_tool

SBOM = Path("sboms") / "cyclonedx" / "crapi.sbom-universal.cdx.json"


@pytest.mark.registry
@pytest.mark.trivy
@pytest.mark.slow
def test_trivy_pulls_and_scans_what_a_scheduled_run_pushed(
    cli: Callable[..., Ran], oci_registry: Registry, shared_data: Path, tmp_path: Path
) -> None:
    trivy = require_tool("trivy")
    ledger = tmp_path / "ledger"
    ingest(ledger, shared_data / "advisories")
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    reference = f"{oci_registry.address}/security/trivy-db:2"
    cli(
        "export", "schedule", "create", "nightly-trivy", "--tenant", "acme", "--profile", "trivy:db",
        "--cron", "0 2 * * *", "--timezone", "Europe/Paris", "--target", f"oci://{reference}",
        "--store", store, check=True,
    )  # fmt: skip
    ran = cli(
        "export", "schedule", "run-now", "nightly-trivy", "--tenant", "acme", "--store", store,
        "--ledger", str(ledger), "--out", str(tmp_path / "bundles"), "--json", check=True,
    )  # fmt: skip
    (fire,) = json.loads(ran.stdout)["fires"]
    assert fire["status"] == "succeeded" and fire["key"].startswith("manual:")
    (target,) = fire["result"]["targets"]
    bundle = Path(fire["result"]["bundle"])
    manifest = json.loads((bundle / "export.json").read_bytes())
    assert target["status"] == "published" and target["digest"] == manifest["trivy"]["oci"]["manifestDigest"]

    sbom = shared_data / SBOM
    pulled = run_trivy(
        trivy, ["sbom", "--cache-dir", str(tmp_path / "pulled"), "--db-repository", reference, str(sbom)],
        tmp_path / "home",
    )  # fmt: skip
    offline_cache = tmp_path / "offline"
    (offline_cache / "db").mkdir(parents=True)
    for name in ("trivy.db", "metadata.json"):
        (offline_cache / "db" / name).write_bytes((bundle / "data" / "db" / name).read_bytes())
    expected = scan_sbom(trivy, offline_cache, sbom, home=tmp_path / "home2")
    assert expected and {(f[1], f[2], f[3]) for f in findings(pulled)} == expected

    listed = json.loads(cli("export", "schedule", "list", "--store", store, "--json", check=True).stdout)[
        "schedules"
    ]
    assert [(s["name"], s["fires"][0]["status"]) for s in listed] == [("nightly-trivy", "succeeded")]
