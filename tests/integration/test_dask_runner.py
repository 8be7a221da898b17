"""Every profile on a real Dask cluster whose workers share nothing with the driver but gs://.

The two workers run in their own working directories and temp folders; the ledger and
the staging location live on the GCS emulator. The bundle must be byte-identical to
the embedded runner's (outputs are compared, never runner states), and the run's staging
folder must be gone afterwards.

A mirror:delta's base is on the driver's disk only: the driver runs in its own mount
namespace where the base chain (a full, then a delta) is bind-mounted on a folder that
the workers, in the machine's namespace, see empty. A worker that opened the base by
path would fail; the run succeeds only if workers read the copies the driver staged.
"""

from __future__ import annotations

import json
import os
import subprocess
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
from tests.support import (
    VENV_BIN,
    check_cli_json,
    export,
    ingest,
    require,
    require_tool,
    run_args,
    tree_digests,
)

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
    dask = (
        f"--staging=gs://{BUCKET}/staging/{profile.replace(':', '-')}",
        "--runner=dask",
        f"--dask_client_address={cluster.address}",
    )
    if profile == "mirror:delta":
        # A chain whose every member counts: the full leaves out A and B, its delta adds B back, and the
        # delta under test (A in, B out) must find B through that delta's change list (or fail with
        # ERR_EXPORT_BASE_MISSING) and A in neither; so the full's record index and the change list are read.
        chain, hidden = tmp_path / "chain", tmp_path / "driver-only"
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
        hidden.mkdir()
        distributed = _export_with_private_base(
            cluster, chain, hidden, tmp_path / "dask", *shards, f"base={hidden / base.name}", *dask
        )
        assert not any(hidden.iterdir())  # what the workers saw at the base's path
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


def _export_with_private_base(cluster: Cluster, chain: Path, hidden: Path, out: Path, *extra: str) -> Path:
    """``stella export run`` (mirror:delta) as a driver that alone sees ``chain`` at ``hidden``.

    ``unshare`` gives the driver a private mount namespace in which ``chain`` is
    bind-mounted on ``hidden``; the Dask workers, started in the machine's namespace,
    find ``hidden`` empty.
    """
    unshare = require_tool("unshare")
    probe = subprocess.run(
        [unshare, "--mount", "--propagation", "private", "true"], capture_output=True, check=False
    )
    require(probe.returncode == 0, f"a private mount namespace (unshare --mount): {probe.stderr!r}")
    script = 'mount --bind "$1" "$2" && shift 2 && exec "$@"'
    command = [
        str(VENV_BIN / "stella"),
        *run_args(cluster.ledger, out, profile="mirror:delta"),
        "--json",
        *extra,
    ]
    result = subprocess.run(
        [
            unshare,
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            str(chain),
            str(hidden),
            *command,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **cluster.env},
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return Path(check_cli_json(result.stdout)["bundle"])
