"""json:policy end to end through the real CLI, on the hand-checked scenario (tests/policy/scenario.py).

The findings must be exactly the hand-worked answers; the (component, version,
vulnerability) set must also equal what the independent OSV oracle of the Trivy tests
(``tests/adapters/trivy_oracle.py``, ordinary version libraries, no adapter code) says.
DuckDB reads the Parquet copy as an analyst would; the raw part must be json:raw's bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import zstandard

from stella.policy.language import parse_policy
from stella.policy.snapshot import SnapshotStore, canonical_snapshot
from tests.adapters.trivy_oracle import Component, expected_findings
from tests.policy.scenario import AS_OF, EXPECTED, POLICY, advisories, sbom_a, sbom_b, write_scenario
from tests.support import stella_cli, tree_digests

TENANT = "acme"


def _export(ledger: Path, out: Path, *extra: str, profile: str = "json:policy") -> Path:
    done = stella_cli("-q", "export", "run", "--tenant", TENANT, "--ledger", str(ledger), "--profile", profile,
                      "--as-of", AS_OF, "--out", str(out), "--json", *extra, check=True)  # fmt: skip
    return Path(json.loads(done.stdout)["bundle"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("policy-world")
    ledger = root / "ledger"
    stella_cli("ledger", "ingest", "--tenant", TENANT, "--ledger", str(ledger), "--ingested-at",
               "2026-06-15T00:00:00Z", str(write_scenario(root / "docs")), check=True)  # fmt: skip
    # Published through the library: the CLI (rightly) refuses EXC-expired, already past its
    # expiry on today's clock; evaluation at AS_OF must show it as expired.
    snapshot = canonical_snapshot(parse_policy(POLICY))
    SnapshotStore(str(ledger)).publish(TENANT, snapshot)
    bundle = _export(ledger, root / "out", "--option", f"policy-snapshot={snapshot.id}")
    return {"ledger": ledger, "bundle": bundle, "snapshot": snapshot, "root": root}


def _lines(bundle: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted((bundle / "data" / "policy" / "findings").glob("*.jsonl.zst")):
        data = zstandard.ZstdDecompressor().stream_reader(path.open("rb")).read()
        out.extend(json.loads(line) for line in data.splitlines())
    return out


def test_findings_are_the_hand_checked_answers(world: dict[str, Any]) -> None:
    found = {}
    for line in _lines(world["bundle"]):
        verdict, vex = line["verdict"], line["vex"]
        key = (line["sbom"]["id"], line["component"]["purl"], line["vulnerability"]["id"])
        found[key] = (
            vex["status"], verdict["value"], verdict["rule"], verdict["exception"],
            tuple(verdict["expiredExceptions"]), len(vex["conflicts"]), tuple(a["id"] for a in line["advisories"]),
        )  # fmt: skip
    assert found == EXPECTED
    lines = {(ln["component"]["purl"], ln["vulnerability"]["id"]): ln for ln in _lines(world["bundle"])}
    django = lines[("pkg:pypi/Django@3.2.0", "CVE-2099-0001")]
    assert django["vulnerability"]["aliases"] == ["GHSA-aaaa-bbbb-cccc", "PYSEC-2099-1"]
    assert {(s["type"], s["score"], s["level"]) for s in django["severity"]} == {
        ("CVSS_V3", 9.8, "critical"),
        ("text", None, "high"),
    }
    assert django["fixedVersions"] == ["3.2.5"]
    assert [a["matched"] for a in django["advisories"]] == [["=3.2.0"], [">=3.0, <3.2.5"]]
    lib = lines[("pkg:golang/github.com/acme/lib@v1.4.0", "CVE-2099-0005")]
    assert [s["document"] for s in lib["vex"]["statements"]] == [
        "https://example.com/vex/march",
        "https://example.com/vex/april",
    ]
    assert lib["vex"]["conflicts"][0]["status"] == "not_affected"
    widget = lines[("pkg:maven/org.example/widget@1.5.0?type=jar", "CVE-2099-0004")]
    assert widget["vex"]["justification"] == "vulnerable_code_not_in_execute_path"
    assert widget["vex"]["effective"]["format"] == "cyclonedx-vex"


def test_matching_agrees_with_the_independent_osv_oracle(world: dict[str, Any]) -> None:
    components = []
    for purl in [c["purl"] for c in sbom_a()["components"]] + [
        r["referenceLocator"] for p in sbom_b()["packages"] for r in p["externalRefs"]
    ]:
        ptype, _, rest = purl[4:].split("?")[0].partition("/")
        path, _, version = rest.rpartition("@")
        name = path.replace("/", ":") if ptype == "maven" else unquote(path)
        components.append(Component(name, version, ptype))
    oracle = expected_findings(advisories()[:-3] + advisories()[-2:], components)  # latest PYSEC-2099-7 only
    exported = set()
    for line in _lines(world["bundle"]):
        package = line["component"]["package"]
        exported.add((package, line["component"]["version"], line["vulnerability"]["id"]))
    assert {(n.replace("Django", "django"), v, i) for n, v, i in oracle} == {
        (n.replace("Django", "django"), v, i) for n, v, i in exported
    }


def test_parquet_holds_the_same_findings_for_duckdb(world: dict[str, Any]) -> None:
    duckdb = pytest.importorskip("duckdb")
    files = sorted(str(p) for p in (world["bundle"] / "data" / "policy" / "parquet").glob("*.parquet"))
    rows = (
        duckdb.connect()
        .execute(
            "SELECT sbom_id, purl, vulnerability_id, verdict, rule, vex_status, vex_conflict, finding "
            f"FROM read_parquet({files!r}) ORDER BY sbom_id, purl, vulnerability_id"
        )
        .fetchall()
    )
    lines = _lines(world["bundle"])
    assert [r[7] for r in rows] == [
        json.dumps(ln, separators=(",", ":"), sort_keys=True, ensure_ascii=False) for ln in lines
    ]
    assert {(r[0], r[1], r[2]): (r[5], r[3], r[4]) for r in rows} == {k: v[:3] for k, v in EXPECTED.items()}
    assert sum(r[6] for r in rows) == 1


def test_manifest_counts_provenance_pins_and_verify(world: dict[str, Any]) -> None:
    bundle, snapshot = world["bundle"], world["snapshot"]
    manifest = json.loads((bundle / "export.json").read_text())
    policy = manifest["policy"]
    assert policy["snapshotId"] == snapshot.id
    assert policy["verdicts"] == {"pass": 2, "warn": 3, "fail": 1}
    assert policy["statuses"] == {"affected": 4, "not_affected": 1, "fixed": 1, "under_investigation": 0}
    assert (
        policy["findings"],
        policy["vexConflicts"],
        policy["exceptionsApplied"],
        policy["exceptionsExpired"],
    ) == (6, 1, 1, 1)
    assert policy["evaluatedAt"] == manifest["generatedAt"] == AS_OF
    assert (bundle / "data" / "policy" / "snapshot.json").read_bytes() == snapshot.canonical
    provenance = json.loads((bundle / "provenance.json").read_text())
    assert provenance["predicate"]["buildDefinition"]["externalParameters"]["policySnapshotId"] == snapshot.id
    assert manifest["options"]["policySnapshot"] == snapshot.id
    assert stella_cli("export", "verify", str(bundle)).returncode == 0


def test_raw_part_is_json_raw_byte_for_byte(world: dict[str, Any]) -> None:
    raw = _export(world["ledger"], world["root"] / "raw", profile="json:raw")
    policy = {p: d for p, d in tree_digests(world["bundle"]).items() if p.startswith("data/raw/")}
    assert policy == {p: d for p, d in tree_digests(raw).items() if p.startswith("data/")}


def test_runs_and_workers_give_identical_bytes(world: dict[str, Any]) -> None:
    option = f"policy-snapshot={world['snapshot'].id}"
    again = _export(world["ledger"], world["root"] / "again", "--option", option)
    workers = _export(world["ledger"], world["root"] / "workers", "--option", option, "--workers", "2")
    first = tree_digests(world["bundle"])
    assert again.name == workers.name == world["bundle"].name
    assert tree_digests(again) == first == tree_digests(workers)


def test_snapshot_required_and_unknown_snapshot_exit_codes(world: dict[str, Any], tmp_path: Path) -> None:
    base = ("export", "run", "--tenant", TENANT, "--ledger", str(world["ledger"]), "--profile", "json:policy",
            "--out", str(tmp_path / "out"))  # fmt: skip
    missing = stella_cli(*base)
    assert missing.returncode == 2 and "ERR_EXPORT_POLICY_SNAPSHOT_REQUIRED" in missing.stderr, missing.stderr
    unknown = stella_cli(*base, "--option", "policy-snapshot=sha256:" + "0" * 64)
    assert unknown.returncode == 6 and "ERR_EXPORT_POLICY_SNAPSHOT_NOT_FOUND" in unknown.stderr, (
        unknown.stderr
    )
    other_tenant = stella_cli(
        *base[:2], "--tenant", "other", *base[4:], "--option", f"policy-snapshot={world['snapshot'].id}"
    )
    assert other_tenant.returncode == 6, other_tenant.stderr
    malformed = stella_cli(*base, "--option", "policy-snapshot=../../x")
    assert malformed.returncode == 2 and "ERR_EXPORT_USAGE" in malformed.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
