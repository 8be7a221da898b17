"""--runner passes through: a real Dask cluster produces the very same bundle bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.services.dask_cluster import dask_cluster
from tests.support import export, ingest, tree_digests


@pytest.mark.slow
def test_dask_runner_matches_the_embedded_runner(tmp_path: Path, shared_data: Path) -> None:
    ledger = tmp_path / "ledger"
    ingest(ledger, shared_data / "advisories" / "osv-go-vulndb.jsonl.zst", shared_data / "sboms")
    local = export(ledger, tmp_path / "local", "--records-per-shard", "300")
    with dask_cluster(tmp_path) as address:
        distributed = export(
            ledger,
            tmp_path / "dask",
            "--records-per-shard",
            "300",
            "--runner=dask",
            f"--dask_client_address={address}",
        )
    manifest = json.loads((distributed / "export.json").read_bytes())
    assert len(manifest["contents"]) > 2  # several shards really went through the cluster
    assert tree_digests(distributed) == tree_digests(local)
