"""Flink/Dataflow readiness, as far as this machine allows (no JVM job server, no cloud).

Every profile's pipeline becomes a portable pipeline proto made only of transforms a
portable runner knows, and the package builds into the artifacts Beam ships to remote
workers (a wheel for ``--extra_package``, the sdist Beam's stager makes from
``--setup_file=pyproject.toml``), schemas included. mirror:delta's pickled steps carry
the URLs of the base members its driver staged, never the driver's path of the base.
"""

from __future__ import annotations

import base64
import bz2
import shutil
import subprocess
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability import common_urns, python_urns
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.portability.stager import Stager

from pipelines.mirror import BASE_DIR
from pipelines.registry import REGISTRY, get_profile
from runners.options import runner_args
from stella.bundle.request import ExportRequest, new_request
from stella.ledger.store import SegmentInfo
from stella.policy.language import parse_policy
from stella.policy.snapshot import canonical_snapshot
from stella.selectors import parse_selectors
from tests.services.gcs import create_bucket, gcs_env
from tests.support import PASS_ALL_POLICY, REPO, export, ingest
from transforms.shards import RUNS_DIR

PROFILES = sorted(name for name, entry in REGISTRY.items() if entry.build is not None)
_PORTABLE = {
    urn.urn
    for group in (common_urns.primitives, common_urns.composites, common_urns.combine_components)
    for urn in group.__dict__.values()
    if hasattr(urn, "urn")
}
_FLINK = ["--runner=FlinkRunner", "--flink_master=127.0.0.1:8081", "--environment_type=LOOPBACK"]
DRIVER_ONLY = "driver-only-base"
DELTA_STAGING = "gs://portable-delta/staging/stella-run-test"


@pytest.fixture(scope="module")
def mirror_base(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple[Path, Path]:
    """A real ledger and a mirror:full export of it: mirror:delta's builder reads its base.

    The base lies in a folder named ``DRIVER_ONLY``, a name no worker payload may carry.
    """
    root = tmp_path_factory.mktemp("mirror-base")
    ingest(root / "ledger", shared_data / "advisories" / "osv-psf.jsonl.zst")
    out = tmp_path_factory.mktemp(DRIVER_ONLY)
    return root / "ledger", export(root / "ledger", out, profile="mirror:full")


def _worker_payloads(proto: beam_runner_api_pb2.Pipeline) -> list[bytes]:
    """The pickled DoFns a runner ships to workers, decompressed (Beam's pickler: base64 of bz2 or zlib)."""
    payloads = []
    for transform in proto.components.transforms.values():
        if transform.spec.urn != common_urns.primitives.PAR_DO.urn:
            continue
        do_fn = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload).do_fn
        if do_fn.urn == python_urns.PICKLED_DOFN_INFO:
            packed = base64.b64decode(do_fn.payload)
            payloads.append(bz2.decompress(packed) if packed.startswith(b"BZh") else zlib.decompress(packed))
    return payloads


def _remote_request(profile: str) -> ExportRequest:
    segment = SegmentInfo(
        "gs://acme/ledger/tenants/acme/segments/0001.avro", "0001", "sha256:" + "0" * 64, 1, 1
    )
    pins = any(option.key == "policy-snapshot" for option in get_profile(profile).options)
    snapshot = canonical_snapshot(parse_policy(PASS_ALL_POLICY)) if pins else None
    return ExportRequest(
        tenant="acme",
        profile=get_profile(profile),
        selectors=parse_selectors(["kind=advisory,sbom"]),
        ledger_root="gs://acme/ledger",
        segments=(segment,),
        out_dir="out",
        policy_snapshot_id=snapshot.id if snapshot else None,
        policy_snapshot=snapshot.canonical if snapshot else None,
    )


@pytest.mark.parametrize("profile", PROFILES)
def test_each_profile_converts_to_a_portable_pipeline(
    profile: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    pipeline = beam.Pipeline(options=PipelineOptions(runner_args(_FLINK)))
    entry = REGISTRY[profile]
    assert entry.build is not None
    staging = "gs://acme/staging/stella-run-test"
    if profile == "mirror:delta":
        ledger, base = request.getfixturevalue("mirror_base")
        export_request = new_request(
            tenant="acme",
            profile=get_profile(profile),
            ledger_root=str(ledger),
            out_dir=str(tmp_path),
            options=[f"base={base}"],
        )
        # Its builder stages the base's members (the driver reads them): on the emulator, not a real bucket.
        gcs = request.getfixturevalue("gcs")
        create_bucket(gcs, DELTA_STAGING.split("/")[2])
        for name, value in gcs_env(gcs).items():
            request.getfixturevalue("monkeypatch").setenv(name, value)
        staging = DELTA_STAGING
    else:
        export_request = _remote_request(profile)
    entry.build(pipeline, export_request, staging)
    proto = pipeline.to_runner_api()
    if profile == "mirror:delta":  # workers get the staged copies' URLs, never the driver's path of the base
        payloads = _worker_payloads(proto)
        assert any(f"{DELTA_STAGING}/{RUNS_DIR}/{BASE_DIR}/".encode() in payload for payload in payloads)
        assert not any(DRIVER_ONLY.encode() in payload for payload in payloads)
    leaves = [t for t in proto.components.transforms.values() if not t.subtransforms]
    # Python-only leaves are allowed only as identities (Beam's own Create emits a
    # MaybeReshuffle that passes its input through); anything doing work must be a
    # primitive a portable runner executes.
    working = [t for t in leaves if dict(t.inputs) != dict(t.outputs)]
    unknown = sorted({(t.unique_name, t.spec.urn) for t in working if t.spec.urn not in _PORTABLE})
    assert unknown == []
    assert {t.spec.urn for t in working} >= {
        common_urns.primitives.IMPULSE.urn,
        common_urns.primitives.PAR_DO.urn,
        common_urns.primitives.GROUP_BY_KEY.urn,
    }
    assert {e.urn for e in proto.components.environments.values()} == {common_urns.environments.DEFAULT.urn}
    # what a job server receives: the serialized proto, read back into the same graph
    again = beam_runner_api_pb2.Pipeline.FromString(proto.SerializeToString())
    rebuilt = beam.Pipeline.from_runner_api(again, pipeline.runner, pipeline._options).to_runner_api()
    assert sorted(t.unique_name for t in rebuilt.components.transforms.values()) == sorted(
        t.unique_name for t in proto.components.transforms.values()
    )


def _source_copy(root: Path) -> Path:
    """The project sources as a fresh clone has them (building writes into the source folder; no built decoder)."""
    source = root / "src"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for package in ("stella", "pipelines", "transforms", "runners", "schemas"):
        shutil.copytree(
            REPO / package,
            source / package,
            ignore=shutil.ignore_patterns("__pycache__", "*.so", "_rowcodec.c", "_jsonrawc.c"),
        )
    return source


@pytest.mark.slow
def test_the_package_builds_as_the_artifacts_beam_ships_to_workers(tmp_path: Path) -> None:
    source = _source_copy(tmp_path)
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", str(dist), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = dist.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"schemas/ledger-record.avsc", "schemas/policy.schema.json"} <= names
    assert {"runners/remote.py", "pipelines/registry.py", "transforms/trivy.py", "stella/storage.py"} <= names
    # the compiled modules (the ledger's row decoder, json:raw's line builder), built for this
    # platform: the workers' image must match it
    for module in ("stella/ledger/_rowcodec.", "stella/adapters/_jsonrawc."):
        assert any(n.startswith(module) and n.endswith(".so") for n in names), (module, sorted(names))
    # --setup_file=pyproject.toml: Beam's own stager builds the sdist it uploads as workflow.tar.gz
    staged = tmp_path / "staged"
    staged.mkdir()
    options = PipelineOptions([f"--setup_file={source / 'pyproject.toml'}", "--sdk_location=container"])
    Stager.create_job_resources(options, str(staged))
    (sdist,) = staged.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        members = {m.name.split("/", 1)[1] for m in archive.getmembers() if "/" in m.name}
    assert {"schemas/ledger-record.avsc", "runners/remote.py"} <= members
    # ...and its source, so a worker installing the sdist compiles the decoder itself
    assert {"setup.py", "stella/ledger/_rowcodec.pyx", "stella/adapters/_jsonrawc.pyx"} <= members
