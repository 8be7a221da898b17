"""Every profile on a real Dask cluster whose workers share nothing with the driver but gs://.

The two workers run in their own working directories and temp folders; the ledger and
the staging location live on the GCS emulator. The bundle must be byte-identical to
the embedded runner's (outputs are compared, never runner states), and the run's staging
folder must be gone afterwards.

A mirror:delta's base is on the driver's disk only: it lies in a folder that the workers
cannot open (an audit hook installed by their preload, :mod:`tests.services.dask_driver_only`,
refuses every open under it, as if it were on another host). A worker that opened the
base by path would fail; the run succeeds only if workers read the copies the driver staged.
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
A, B = "PSF-2007-1", "PSF-2007-2"  # two advisories of the ledger, for mirror:delta's chain


def _excluding(*ids: str) -> tuple[str, ...]:
    return ("--selector", f"exclude-id={','.join(ids)}")


@dataclass(frozen=True)
class Cluster:
    address: str
    emulator: str
    env: dict[str, str]
    ledger: str
    options: dict[str, tuple[str, ...]]
    driver_only: Path


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
    driver_only = root / "driver-only"
    (driver_only / "probe").mkdir(parents=True)
    (driver_only / "probe" / "file").write_bytes(b"driver's")
    with dask_cluster(root, env=env, driver_only=driver_only) as address:
        from distributed import Client

        with Client(address, timeout=30) as client:  # the guard really holds on every worker
            for worker in sorted(client.scheduler_info()["workers"]):
                probe = client.submit(
                    (driver_only / "probe" / "file").read_bytes, workers=[worker], pure=False
                )
                with pytest.raises(PermissionError):
                    probe.result(timeout=60)
        yield Cluster(address, gcs, env, ledger, options, driver_only)


@pytest.mark.slow
@pytest.mark.gcs
@pytest.mark.parametrize(
    "profile", sorted(name for name, entry in REGISTRY.items() if entry.build is not None)
)
def test_dask_with_gcs_staging_matches_the_embedded_runner(
    profile: str, cluster: Cluster, tmp_path: Path
) -> None:
    shards: tuple[str, ...] = ("--records-per-shard", "40", *cluster.options.get(profile, ()))
    dask = (
        f"--staging=gs://{BUCKET}/staging/{profile.replace(':', '-')}",
        "--runner=dask",
        f"--dask_client_address={cluster.address}",
    )
    if profile == "mirror:delta":
        # A chain whose every member counts: the full leaves out A and B, its delta adds B back, and the
        # delta under test (A in, B out) must find B through that delta's change list (or fail with
        # ERR_EXPORT_BASE_MISSING) and A in neither; so the full's record index and the change list are read.
        chain = cluster.driver_only / tmp_path.name  # the driver reads it; no worker can open it
        full = export(cluster.ledger, chain, *_excluding(A, B), profile="mirror:full", env=cluster.env)
        base = export(
            cluster.ledger,
            chain,
            *_excluding(A),
            "--option",
            f"base={full.name}",
            profile=profile,
            env=cluster.env,
        )
        shards += (*_excluding(B), "--option")
        local = export(
            cluster.ledger, tmp_path / "local", *shards, f"base={base}", profile=profile, env=cluster.env
        )
        distributed = export(
            cluster.ledger,
            tmp_path / "dask",
            *shards,
            f"base={base}",
            *dask,
            profile=profile,
            env=cluster.env,
        )
        delta = json.loads((distributed / "export.json").read_bytes())["delta"]
        assert (delta["added"], delta["changed"], delta["removed"]) == (1, 0, 1)
    else:
        local = export(cluster.ledger, tmp_path / "local", *shards, profile=profile, env=cluster.env)
        distributed = export(
            cluster.ledger, tmp_path / "dask", *shards, *dask, profile=profile, env=cluster.env
        )
    manifest = json.loads((distributed / "export.json").read_bytes())
    assert sum(manifest["counts"].values()) > 0  # records really went through the cluster
    assert tree_digests(distributed) == tree_digests(local)
    assert list_blobs(cluster.emulator, BUCKET, f"staging/{profile.replace(':', '-')}/") == []
