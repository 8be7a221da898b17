"""Everyday commands: defaults from the environment and config.toml, stdin ingest, the quarantine."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
import zstandard

from tests.cli.conftest import Runner
from tests.support import DATA, T0


def test_tenant_and_ledger_come_from_env_then_config(
    cli: Runner, small_ledger: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(f'tenant = "acme"\nledger = "{small_ledger}"\n')
    from_config = cli("ledger", "stats", "--json").json()
    assert [t["tenant"] for t in from_config["tenants"]] == ["acme"] and from_config["ledger"] == str(
        small_ledger
    )
    monkeypatch.setenv("STELLA_TENANT", "other")
    overridden = cli("ledger", "quarantine", "ls", "--json").json()
    assert overridden["tenant"] == "other"  # the environment wins over the file, the flag over both
    assert cli("ledger", "quarantine", "ls", "--tenant", "acme", "--json").json()["tenant"] == "acme"


def test_ingest_reads_jsonl_from_stdin(cli: Runner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    raw = zstandard.ZstdDecompressor().decompress(
        (DATA / "advisories" / "osv-ghsa-sample.jsonl.zst").read_bytes(), max_output_size=1 << 26
    )
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw)))
    ran = cli(
        "ledger",
        "ingest",
        "--tenant",
        "acme",
        "--ledger",
        str(tmp_path / "l"),
        "--ingested-at",
        T0,
        "-",
        "--json",
    )
    assert ran.code == 0, ran.stderr
    report = ran.json()
    assert report["added"] == len([line for line in raw.splitlines() if line.strip()])
    assert report["added"] > 1


def test_quarantine_lists_and_purges(cli: Runner, tmp_path: Path) -> None:
    bad = tmp_path / "in"
    bad.mkdir()
    (bad / "a.json").write_text('{"not": "a document"}')
    (bad / "ok.json").write_bytes(next((DATA / "vex" / "openvex").glob("*.json")).read_bytes())
    ledger = str(tmp_path / "l")
    assert (
        cli("ledger", "ingest", "--tenant", "acme", "--ledger", ledger, "--ingested-at", T0, str(bad)).code
        == 0
    )
    listed = cli("ledger", "quarantine", "ls", "--tenant", "acme", "--ledger", ledger, "--json").json()
    assert len(listed["quarantined"]) == 1 and listed["quarantined"][0]["sources"] == ["in/a.json"]
    dry = cli(
        "ledger", "quarantine", "purge", "--tenant", "acme", "--ledger", ledger, "--dry-run", "--json"
    ).json()
    assert dry["purged"] == 1 and dry["dryRun"] is True
    assert (
        len(
            cli("ledger", "quarantine", "ls", "--tenant", "acme", "--ledger", ledger, "--json").json()[
                "quarantined"
            ]
        )
        == 1
    )
    assert cli("ledger", "quarantine", "purge", "--tenant", "acme", "--ledger", ledger).code == 0
    assert (
        cli("ledger", "quarantine", "ls", "--tenant", "acme", "--ledger", ledger, "--json").json()[
            "quarantined"
        ]
        == []
    )
