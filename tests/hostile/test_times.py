"""Placeholder times in real data (Go's zero time) and the one zero-padding RFC 3339 writer."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from backports import zstd

from stella.timefmt import format_go_time, format_time, is_placeholder, rfc3339
from tests.adapters.trivy_scan import scan_sbom
from tests.support import require_tool, stella_cli

INGESTED = "2026-11-01T00:00:00Z"


def test_the_writer_zero_pads_every_field() -> None:
    year_one = datetime(1, 1, 1, tzinfo=UTC)
    assert format_time(year_one) == format_go_time(year_one) == "0001-01-01T00:00:00Z"
    moment = datetime(987, 6, 5, 4, 3, 2, 100, tzinfo=UTC)
    assert rfc3339(moment) == "0987-06-05T04:03:02.000100Z"
    assert rfc3339(moment, fraction="go") == "0987-06-05T04:03:02.0001Z"
    with pytest.raises(ValueError):
        rfc3339(datetime(2026, 1, 1))  # naive: the zone would be the machine's guess
    assert is_placeholder("0001-01-01T00:00:00Z") and is_placeholder("1970-01-01T00:00:00Z")
    assert not is_placeholder("1999-01-01T00:00:00Z")


@pytest.fixture(scope="module")
def ledgers(tmp_path_factory: pytest.TempPathFactory, go_vulndb: Path) -> tuple[Path, dict[str, object]]:
    """Tenant ``go``: every Go vulndb record (all ``modified`` 0001-01-01); tenant ``gin``: one of them."""
    root = tmp_path_factory.mktemp("times")
    lines = zstd.decompress(go_vulndb.read_bytes()).splitlines()
    gin = [line for line in lines if b'"GO-2020-0001"' in line]
    (root / "gin.jsonl").write_bytes(b"\n".join(gin) + b"\n")
    ledger = root / "ledger"
    report = stella_cli(
        "ledger", "ingest", "--tenant", "go", "--ledger", str(ledger), "--ingested-at", INGESTED, "--json", str(go_vulndb),
        check=True,
    )  # fmt: skip
    stella_cli("ledger", "ingest", "--tenant", "gin", "--ledger", str(ledger), "--ingested-at", INGESTED, str(root / "gin.jsonl"), check=True)  # fmt: skip
    return ledger, json.loads(report.stdout)


def test_ingest_says_which_times_were_placeholders(ledgers: tuple[Path, dict[str, object]]) -> None:
    _ledger, report = ledgers
    notes = [entry["note"] for entry in report["placeholderTimes"]]  # type: ignore[attr-defined]
    assert len(notes) == report["added"] == 1079
    by_published = sum("dated by published" in n for n in notes)
    at_ingestion = sum("dated at ingestion" in n for n in notes)
    assert (by_published, at_ingestion) == (252, 827)  # 827 records also carry a zero `published`


def _export(ledger: Path, out: Path, tenant: str, profile: str) -> Path:
    done = stella_cli(
        "export", "run", "--tenant", tenant, "--profile", profile, "--ledger", str(ledger), "--out", str(out),
        "--selector", "ecosystem=Go", "--json",
        check=True,
    )  # fmt: skip
    return Path(json.loads(done.stdout)["bundle"])


@pytest.mark.slow
def test_every_profile_dates_placeholder_records_by_published_or_ingestion(
    ledgers: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    ledger, _report = ledgers
    for profile in ("json:raw", "trivy:db"):
        bundle = _export(ledger, tmp_path / profile.replace(":", "-"), "go", profile)
        generated = json.loads((bundle / "export.json").read_bytes())["generatedAt"]
        assert generated == INGESTED, profile  # most records have no real time at all
    gin = _export(ledger, tmp_path / "gin", "gin", "trivy:db")
    metadata = json.loads((gin / "data" / "db" / "metadata.json").read_bytes())
    assert metadata["UpdatedAt"] == "2021-04-14T20:04:52Z"  # GO-2020-0001's `published`


@pytest.mark.slow
def test_trivy_loads_a_db_built_from_go_zero_time_records_and_reports_findings(
    ledgers: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    trivy = require_tool("trivy")
    ledger, _report = ledgers
    bundle = _export(ledger, tmp_path / "out", "go", "trivy:db")
    cache = tmp_path / "cache"
    shutil.copytree(bundle / "data" / "db", cache / "db")
    sbom = tmp_path / "gin.cdx.json"
    sbom.write_text(
        json.dumps(
            {
                "bomFormat": "CycloneDX",
                "specVersion": "1.5",
                "version": 1,
                "metadata": {"component": {"type": "application", "name": "app", "bom-ref": "app"}},
                "components": [
                    {
                        "type": "library",
                        "name": "github.com/gin-gonic/gin",
                        "version": "v1.5.0",
                        "purl": "pkg:golang/github.com/gin-gonic/gin@v1.5.0",
                        "bom-ref": "gin",
                    }
                ],
            }
        )
    )
    found = scan_sbom(trivy, cache, sbom, home=tmp_path / "home")
    assert any(
        pkg == "github.com/gin-gonic/gin" and vid in {"CVE-2020-36567", "GO-2020-0001"}
        for pkg, _v, vid in found
    ), found


def test_api_and_log_times_use_the_same_writer() -> None:
    from stella.service.store.interface import iso

    assert (
        rfc3339(datetime(1, 2, 3, 4, 5, 6, 7000, tzinfo=UTC), fraction="milli") == "0001-02-03T04:05:06.007Z"
    )
    assert iso(0.5) == "1970-01-01T00:00:00.500Z"
