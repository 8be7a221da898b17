"""Flink/Dataflow readiness, as far as this machine allows (no JVM job server, no cloud).

Every profile's pipeline becomes a portable pipeline proto made only of transforms a
portable runner knows, and the package builds into the artifacts Beam ships to remote
workers (a wheel for ``--extra_package``, the sdist Beam's stager makes from
``--setup_file=pyproject.toml``), schemas included.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.portability.stager import Stager

from pipelines.registry import REGISTRY, get_profile
from runners.options import runner_args
from stella.bundle.request import ExportRequest, new_request
from stella.ledger.store import SegmentInfo
from stella.policy.language import parse_policy
from stella.policy.snapshot import canonical_snapshot
from stella.selectors import parse_selectors
from tests.support import PASS_ALL_POLICY, REPO, export, ingest

PROFILES = sorted(name for name, entry in REGISTRY.items() if entry.build is not None)
_PORTABLE = {
    urn.urn
    for group in (common_urns.primitives, common_urns.composites, common_urns.combine_components)
    for urn in group.__dict__.values()
    if hasattr(urn, "urn")
}
_FLINK = ["--runner=FlinkRunner", "--flink_master=127.0.0.1:8081", "--environment_type=LOOPBACK"]


@pytest.fixture(scope="module")
def mirror_base(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple[Path, Path]:
    """A real ledger and a mirror:full export of it: mirror:delta's builder reads its base."""
    root = tmp_path_factory.mktemp("mirror-base")
    ingest(root / "ledger", shared_data / "advisories" / "osv-psf.jsonl.zst")
    return root / "ledger", export(root / "ledger", root / "out", profile="mirror:full")


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
def test_each_profile_converts_to_a_portable_pipeline(profile: str, request: pytest.FixtureRequest) -> None:
    pipeline = beam.Pipeline(options=PipelineOptions(runner_args(_FLINK)))
    entry = REGISTRY[profile]
    assert entry.build is not None
    if profile == "mirror:delta":
        ledger, base = request.getfixturevalue("mirror_base")
        export_request = new_request(
            tenant="acme",
            profile=get_profile(profile),
            ledger_root=str(ledger),
            out_dir=str(base.parent),
            options=[f"base={base.name}"],
        )
    else:
        export_request = _remote_request(profile)
    entry.build(pipeline, export_request, "gs://acme/staging/stella-run-test")
    proto = pipeline.to_runner_api()
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
    """The project sources as a fresh clone has them (building writes into the source folder)."""
    source = root / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for package in ("stella", "pipelines", "transforms", "runners", "schemas"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
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
    # --setup_file=pyproject.toml: Beam's own stager builds the sdist it uploads as workflow.tar.gz
    staged = tmp_path / "staged"
    staged.mkdir()
    options = PipelineOptions([f"--setup_file={source / 'pyproject.toml'}", "--sdk_location=container"])
    Stager.create_job_resources(options, str(staged))
    (sdist,) = staged.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        members = {m.name.split("/", 1)[1] for m in archive.getmembers() if "/" in m.name}
    assert {"schemas/ledger-record.avsc", "runners/remote.py"} <= members
