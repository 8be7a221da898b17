"""``stella export plan --profile P`` counts what a run of P writes: the profile's own filter
(pipelines/registry.py ``keep``) is the one its pipeline applies, so plan and run cannot drift."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stella.cli import main
from tests.cli.conftest import Runner
from tests.support import DATA, T0, preserved_logging, profile_options


@pytest.fixture(scope="module")
def mixed_ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OSV advisories, one CSAF advisory (trivy:db leaves it out), SBOMs with jars, OpenVEX."""
    root = tmp_path_factory.mktemp("plan-ledger") / "ledger"
    sources = [
        DATA / "advisories" / "osv-ghsa-sample.jsonl.zst",
        *sorted((DATA / "advisories").glob("*csaf*")),
        *sorted((DATA / "vex" / "csaf-vex").glob("*.json"))[:2],
        DATA / "sboms" / "cyclonedx" / "dropwizard-1.3.15.cdx.json",
        DATA / "sboms" / "cyclonedx" / "python311-container.syft.cdx.json",
        DATA / "vex" / "openvex",
    ]
    with preserved_logging():
        code = main(["ledger", "ingest", "--tenant", "acme", "--ledger", str(root), "--ingested-at", T0, "-q",
                     *map(str, sources)])  # fmt: skip
    assert code == 0
    return root


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["json:raw", "json:policy", "trivy:db", "trivy:java-db", "mirror:full"])
def test_plan_counts_what_the_run_writes(
    profile: str, mixed_ledger: Path, cli: Runner, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    shutil.copytree(mixed_ledger, ledger)
    options = profile_options(profile, ledger)
    planned = cli(
        "export", "plan", "--tenant", "acme", "--ledger", str(ledger), "--profile", profile, "--json"
    )
    assert planned.code == 0, planned.stderr
    plan = planned.json()
    out = tmp_path / "out"
    ran = cli("export", "run", "--tenant", "acme", "--ledger", str(ledger), "--profile", profile,
              *options, "--out", str(out), "-q")  # fmt: skip
    assert ran.code == 0, ran.stderr
    (bundle,) = [path for path in out.iterdir() if path.is_dir()]
    manifest = json.loads((bundle / "export.json").read_bytes())
    assert plan["profile"] == profile
    assert plan["counts"] == manifest["counts"], (plan["counts"], manifest["counts"])


def test_trivy_db_plan_leaves_out_what_the_profile_does_not_take(mixed_ledger: Path, cli: Runner) -> None:
    def counts(profile: str) -> dict[str, int]:
        ran = cli(
            "export",
            "plan",
            "--tenant",
            "acme",
            "--ledger",
            str(mixed_ledger),
            "--profile",
            profile,
            "--json",
        )
        assert ran.code == 0, ran.stderr
        result: dict[str, int] = ran.json()["counts"]
        return result

    everything, trivy, java = counts("json:raw"), counts("trivy:db"), counts("trivy:java-db")
    assert set(trivy) == {"advisory"} and 0 < trivy["advisory"] <= everything["advisory"]
    assert java == {"sbom": everything["sbom"]}
