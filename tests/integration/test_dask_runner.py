"""Every profile on a real Dask cluster whose workers share nothing with the driver but gs://.

The two workers run in their own working directories and temp folders; the ledger and
the staging location live on the GCS emulator. The bundle must be byte-identical to
the embedded runner's (outputs are compared, never runner states), and the run's staging
folder must be gone afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelines.registry import REGISTRY
from stella.policy.language import parse_policy
from stella.policy.snapshot import SnapshotStore, canonical_snapshot
from tests.policy.scenario import POLICY
from tests.services.dask_cluster import dask_cluster
from tests.services.gcs import create_bucket, gcs_env, list_blobs
from tests.support import export, ingest, tree_digests

BUCKET = "stella"


@dataclass(frozen=True)
class Cluster:
    address: str
    emulator: str
    env: dict[str, str]
    ledger: str
    options: dict[str, tuple[str, ...]]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, shared_data: Path, gcs: str) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("dask-gcs")
    env = gcs_env(gcs)
    create_bucket(gcs, BUCKET)
    ledger = f"gs://{BUCKET}/ledger"
    ingest(
        ledger,
        shared_data / "advisories" / "osv-psf.jsonl.zst",
        shared_data / "advisories" / "osv-ghsa-sample.jsonl.zst",
        shared_data / "sboms",
        env=env,
    )
    snapshot = canonical_snapshot(parse_policy(POLICY))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        SnapshotStore(ledger).publish("acme", snapshot)
    options = {"json:policy": ("--option", f"policy-snapshot={snapshot.id}")}
    with dask_cluster(root, env=env) as address:
        yield Cluster(address, gcs, env, ledger, options)


@pytest.mark.slow
@pytest.mark.gcs
@pytest.mark.parametrize(
    "profile", sorted(name for name, entry in REGISTRY.items() if entry.build is not None)
)
def test_dask_with_gcs_staging_matches_the_embedded_runner(
    profile: str, cluster: Cluster, tmp_path: Path
) -> None:
    shards: tuple[str, ...] = ("--records-per-shard", "40", *cluster.options.get(profile, ()))
    if profile == "mirror:delta":  # its base, in a local folder the driver and these local workers read
        base = export(cluster.ledger, tmp_path / "base", profile="mirror:full", env=cluster.env)
        shards += ("--option", f"base={base}")
    local = export(cluster.ledger, tmp_path / "local", *shards, profile=profile, env=cluster.env)
    distributed = export(
        cluster.ledger,
        tmp_path / "dask",
        *shards,
        f"--staging=gs://{BUCKET}/staging/{profile.replace(':', '-')}",
        "--runner=dask",
        f"--dask_client_address={cluster.address}",
        profile=profile,
        env=cluster.env,
    )
    manifest = json.loads((distributed / "export.json").read_bytes())
    assert sum(manifest["counts"].values()) > 0  # records really went through the cluster
    assert tree_digests(distributed) == tree_digests(local)
    assert list_blobs(cluster.emulator, BUCKET, f"staging/{profile.replace(':', '-')}/") == []
