"""A ledger on gs:// (through Beam's filesystems) behaves exactly like a local one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.services.gcs import create_bucket, gcs_env
from tests.support import export, ingest, tree_digests


@pytest.mark.gcs
def test_gs_ledger_ingest_and_export_match_local(tmp_path: Path, shared_data: Path, gcs: str) -> None:
    inputs = [shared_data / "advisories" / "osv-ghsa-sample.jsonl.zst", shared_data / "vex" / "openvex"]
    env = gcs_env(gcs)
    create_bucket(gcs, "ledgers")
    remote = "gs://ledgers/stella"
    assert ingest(remote, *inputs, env=env)["added"] == 21
    again = ingest(remote, *inputs, env=env)
    assert again["added"] == 0 and again["duplicates"] == 21
    local = tmp_path / "local"
    assert ingest(local, *inputs)["added"] == 21
    a = export(remote, tmp_path / "a", env=env)
    b = export(local, tmp_path / "b")
    assert (a / "provenance.json").read_text() == (b / "provenance.json").read_text()
    assert tree_digests(a) == tree_digests(b)
