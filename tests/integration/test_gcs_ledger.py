"""A ledger on gs:// (through Beam's filesystems) behaves exactly like a local one."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.services.gcs import gcs_emulator
from tests.support import VENV_BIN, tree_digests

T0 = "2026-11-27T00:00:00Z"


@pytest.mark.gcs
def test_gs_ledger_ingest_and_export_match_local(tmp_path: Path, shared_data: Path) -> None:
    inputs = [
        str(shared_data / "advisories" / "osv-ghsa-sample.jsonl.zst"),
        str(shared_data / "vex" / "openvex"),
    ]
    with gcs_emulator(tmp_path) as url:
        env = {
            **os.environ,
            "STORAGE_EMULATOR_HOST": url,
            "NO_GCE_CHECK": "true",
            "GOOGLE_CLOUD_PROJECT": "test",
        }
        create = subprocess.run(
            [
                str(VENV_BIN / "python"),
                "-c",
                "from google.auth.credentials import AnonymousCredentials; from google.cloud import storage; "
                "storage.Client(credentials=AnonymousCredentials(), project='test').create_bucket('ledgers')",
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        assert create.returncode == 0, create.stderr

        def stella(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [str(VENV_BIN / "stella"), *args], env=env, capture_output=True, text=True, timeout=600
            )

        remote = "gs://ledgers/stella"
        first = stella(
            "ledger", "ingest", "--tenant", "acme", "--ledger", remote, "--ingested-at", T0, "--json", *inputs
        )
        assert first.returncode == 0, first.stderr
        assert json.loads(first.stdout)["added"] == 21
        again = stella(
            "ledger", "ingest", "--tenant", "acme", "--ledger", remote, "--ingested-at", T0, "--json", *inputs
        )
        assert json.loads(again.stdout)["added"] == 0 and json.loads(again.stdout)["duplicates"] == 21
        local = tmp_path / "local"
        assert (
            stella(
                "ledger", "ingest", "--tenant", "acme", "--ledger", str(local), "--ingested-at", T0, *inputs
            ).returncode
            == 0
        )
        from_gcs = stella(
            "export",
            "run",
            "--tenant",
            "acme",
            "--profile",
            "json:raw",
            "--ledger",
            remote,
            "--out",
            str(tmp_path / "a"),
            "--json",
        )
        assert from_gcs.returncode == 0, from_gcs.stdout + from_gcs.stderr
        from_disk = stella(
            "export",
            "run",
            "--tenant",
            "acme",
            "--profile",
            "json:raw",
            "--ledger",
            str(local),
            "--out",
            str(tmp_path / "b"),
            "--json",
        )
        assert from_disk.returncode == 0, from_disk.stderr
        a, b = Path(json.loads(from_gcs.stdout)["bundle"]), Path(json.loads(from_disk.stdout)["bundle"])
        assert (a / "provenance.json").read_text() == (b / "provenance.json").read_text()
        assert tree_digests(a) == tree_digests(b)
