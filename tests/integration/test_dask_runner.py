"""--runner passes through: a real Dask cluster produces the very same bundle bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.services.dask_cluster import dask_cluster
from tests.support import stella_cli, tree_digests

T0 = "2026-11-27T00:00:00Z"


@pytest.mark.slow
def test_dask_runner_matches_the_embedded_runner(tmp_path: Path, shared_data: Path) -> None:
    ledger = tmp_path / "ledger"
    stella_cli(
        "ledger",
        "ingest",
        "--tenant",
        "acme",
        "--ledger",
        str(ledger),
        "--ingested-at",
        T0,
        str(shared_data / "advisories" / "osv-go-vulndb.jsonl.zst"),
        str(shared_data / "sboms"),
        check=True,
    )
    common = [
        "export",
        "run",
        "--tenant",
        "acme",
        "--profile",
        "json:raw",
        "--ledger",
        str(ledger),
        "--records-per-shard",
        "300",
        "--json",
    ]
    local = Path(
        json.loads(stella_cli(*common, "--out", str(tmp_path / "local"), check=True).stdout)["bundle"]
    )
    with dask_cluster(tmp_path) as address:
        result = stella_cli(
            *common,
            "--out",
            str(tmp_path / "dask"),
            "--runner=dask",
            f"--dask_client_address={address}",
            check=True,
        )
    distributed = Path(json.loads(result.stdout)["bundle"])
    manifest = json.loads((distributed / "export.json").read_bytes())
    assert len(manifest["contents"]) > 2  # several shards really went through the cluster
    assert tree_digests(distributed) == tree_digests(local)
