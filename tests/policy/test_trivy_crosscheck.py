"""json:policy findings against the real Trivy 0.76, from one ledger.

The ledger holds all of ``../shared/data``; ``trivy:db`` and ``json:policy`` are both
exported from it with the CLI. For every shared CycloneDX SBOM, the (component, version,
vulnerability) findings of json:policy must equal what ``trivy sbom`` reports with the
exported DB. Then VEX: OpenVEX, CycloneDX VEX (BOM-Link) and CSAF documents, written here
against real findings of the crAPI SBOM and ingested into the same ledger, must remove
from json:policy's affected findings exactly what ``trivy sbom --vex`` removes.

Every remaining difference is one of ``DIFFERENCES`` (Trivy's own semantics, with the
reason) or the OSV-oracle divergences already listed in ``tests/adapters/trivy_oracle.py``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import zstandard

from stella.documents.cyclonedx import subject_of
from stella.policy.language import parse_policy
from stella.policy.snapshot import SnapshotStore, canonical_snapshot
from tests.adapters.test_trivy_scan import synthetic_records
from tests.adapters.trivy_oracle import Finding, explain
from tests.adapters.trivy_scan import findings_context, sbom_components, scan_sbom
from tests.policy.os_world import OS_SBOMS, os_world, shape_of
from tests.support import require_tool, stella_cli

pytestmark = [pytest.mark.trivy, pytest.mark.slow]

TENANT = "acme"
T0 = "2026-11-27T00:00:00Z"
PASS_ALL = "apiVersion: stella.policy/v1\nkind: Policy\nmetadata: {name: pass-all}\nrules: [{id: all, verdict: pass}]\n"


# Differences that are Trivy's semantics, not ours: (name, reason, applies(finding, side, vex-context)).
def _os_shape(finding: Finding, ctx: Mapping[str, Any]) -> tuple[str, str] | None:
    records = ctx["osv"].get(finding[2], [])
    return shape_of(records[0]) if len(records) == 1 else None


DIFFERENCES: tuple[tuple[str, str, Callable[[Finding, str, Mapping[str, Any]], bool]], ...] = (
    (
        "os-range-unrepresentable",
        "Trivy's OS buckets hold one FixedVersion per advisory, compared as installed < fixed: a range "
        "that opens at a later version ('introduced: X') cannot be written, the trivy:db adapter counts it "
        "as untranslated, and only json:policy (OSV semantics) reports the installed X",
        lambda f, side, ctx: (
            side == "policy-only" and (_os_shape(f, ctx) or ("", ""))[1] == "opens-at-installed"
        ),
    ),
    (
        "os-unfixed-unmatched",
        "Trivy's Rocky Linux, AlmaLinux and Wolfi detectors compare FixedVersion only (their updateinfo and secdb "
        "feeds never say 'affected, no fix'), so an OSV range with no fix is untranslated there; json:policy "
        "reports it",
        lambda f, side, ctx: (
            side == "policy-only"
            and (_os_shape(f, ctx) or ("", ""))[1] == "unfixed"
            and (_os_shape(f, ctx) or ("", ""))[0].startswith(
                ("Rocky Linux", "AlmaLinux", "Wolfi", "Chainguard")
            )
        ),
    ),
    (
        "vex-any-not-affected-wins",
        "Trivy applies every --vex document as a filter and drops a finding any of them calls not_affected; "
        "json:policy resolves statements by time and keeps the latest (affected), recording the older one "
        "as a conflict",
        lambda f, side, ctx: side == "policy-only" and f in ctx.get("conflicts", set()),
    ),
)


def _lines(bundle: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted((bundle / "data" / "policy" / "findings").glob("*.jsonl.zst")):
        data = zstandard.ZstdDecompressor().stream_reader(path.open("rb")).read()
        out.extend(json.loads(line) for line in data.splitlines())
    return out


def _as_trivy(line: dict[str, Any]) -> Finding:
    comp = line["component"]
    name = comp["package"] if comp["ecosystem"] == "Maven" else comp["name"]
    return (name, comp["version"], line["vulnerability"]["id"])


def _sbom_id(doc: dict[str, Any]) -> str:
    """How the ledger names a CycloneDX SBOM: serial number, else its subject."""
    return str(doc.get("serialNumber") or subject_of(doc["metadata"]["component"]))


def _export(ledger: Path, out: Path, profile: str, *extra: str) -> Path:
    done = stella_cli("-q", "export", "run", "--tenant", TENANT, "--ledger", str(ledger), "--profile", profile,
                      "--out", str(out), "--json", *extra, check=True)  # fmt: skip
    return Path(json.loads(done.stdout)["bundle"])


def _vex_documents(
    sbom: dict[str, Any], lines: list[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """VEX files about five real findings of ``sbom``, and what each should do."""
    # CVE ids only: CSAF's ``cve`` field (and Trivy's CSAF reader) require the CVE pattern.
    cves = [ln for ln in lines if ln["vulnerability"]["id"].startswith("CVE-")]
    picks = sorted(cves, key=lambda ln: (ln["component"]["purl"], ln["vulnerability"]["id"]))
    by_purl: dict[str, dict[str, Any]] = {}
    for line in picks:  # one vulnerability per component, five components
        by_purl.setdefault(line["component"]["purl"], line)
    chosen = list(by_purl.values())[:5]
    assert len(chosen) == 5, "the crAPI SBOM has fewer vulnerable components than this test needs"
    openvex_ctx = "https://openvex.dev/ns/v0.2.0"

    def purl_without_version(purl: str) -> str:
        return purl.split("?")[0].rsplit("@", 1)[0]

    def openvex(doc_id: str, when: str, statements: list[dict[str, Any]]) -> dict[str, Any]:
        return {"@context": openvex_ctx, "@id": doc_id, "author": "stella-test", "timestamp": when, "version": 1,
                "statements": statements}  # fmt: skip

    def stmt(line: dict[str, Any], product: str, status: str, **more: str) -> dict[str, Any]:
        return {"vulnerability": {"name": line["vulnerability"]["id"]}, "products": [{"@id": product}],
                "status": status, **more}  # fmt: skip

    a, b, c, d, e = chosen
    serial = sbom["serialNumber"]
    docs = {
        # a: version-less purl, not_affected; e: under_investigation (stays a finding)
        "openvex-a.json": openvex("https://example.com/vex/a", "2026-03-01T00:00:00Z", [
            stmt(a, purl_without_version(a["component"]["purl"]), "not_affected",
                 justification="vulnerable_code_not_in_execute_path"),
            stmt(e, e["component"]["purl"], "under_investigation"),
        ]),
        # d: not_affected in March, affected in April (a conflict)
        "openvex-d-march.json": openvex("https://example.com/vex/d1", "2026-03-01T00:00:00Z", [
            stmt(d, d["component"]["purl"], "not_affected", justification="component_not_present")]),
        "openvex-d-april.json": openvex("https://example.com/vex/d2", "2026-04-01T00:00:00Z", [
            stmt(d, d["component"]["purl"], "affected", action_statement="upgrade")]),
        # b: CycloneDX VEX by BOM-Link to this SBOM's component
        "cyclonedx-b.json": {
            "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
            "serialNumber": "urn:uuid:cccccccc-0000-4000-8000-000000000003",
            "metadata": {"timestamp": "2026-03-10T00:00:00Z"},
            "vulnerabilities": [{
                "id": b["vulnerability"]["id"],
                "analysis": {"state": "not_affected", "justification": "code_not_reachable"},
                "affects": [{"ref": f"urn:cdx:{serial[len('urn:uuid:'):]}/{sbom.get('version', 1)}#{b['component']['bomRef']}"}],
            }],
        },
        # c: CSAF known_not_affected by purl with version
        "csaf-c.json": {
            "document": {"category": "csaf_vex", "csaf_version": "2.0", "title": "stella test",
                         "publisher": {"category": "vendor", "name": "stella", "namespace": "https://example.com"},
                         "tracking": {"id": "STELLA-VEX-C", "status": "final", "version": "1",
                                      "initial_release_date": "2026-03-20T00:00:00Z",
                                      "current_release_date": "2026-03-20T00:00:00Z",
                                      "revision_history": [{"date": "2026-03-20T00:00:00Z", "number": "1", "summary": "x"}]}},
            "product_tree": {"branches": [{"category": "vendor", "name": "stella", "branches": [
                {"category": "product_name", "name": c["component"]["name"],
                 "product": {"name": c["component"]["name"], "product_id": "P-C",
                             "product_identification_helper": {"purl": c["component"]["purl"]}}}]}]},
            "vulnerabilities": [{"cve": c["vulnerability"]["id"], "product_status": {"known_not_affected": ["P-C"]},
                                 "flags": [{"label": "vulnerable_code_not_present", "product_ids": ["P-C"]}]}],
        },
    }  # fmt: skip
    expect = {
        "cleared": {_as_trivy(x) for x in (a, b, c)},
        "kept": {_as_trivy(x) for x in (d, e)},
        "conflicts": {_as_trivy(d)},
    }
    return docs, expect


@pytest.fixture(scope="module")
def trivy() -> str:
    return require_tool("trivy")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("policy-trivy")
    ledger = root / "ledger"
    # Besides the shared advisories (which barely touch npm, Maven and Composer), synthetic
    # ones placed around the SBOMs' own versions exercise every comparer (tests/adapters).
    components = [c for path in _shared_sboms() for c in sbom_components(json.loads(path.read_text()))]
    synthetic = [{**r, "modified": "2026-01-01T00:00:00Z"} for r in synthetic_records(components)]
    os_sboms, os_records = os_world(shared_data, root / "os-sboms")
    synthetic += os_records
    (root / "synthetic.jsonl").write_text("".join(json.dumps(r) + "\n" for r in synthetic))
    folders = [str(shared_data / f) for f in ("advisories", "sboms", "vex")]
    folders += [str(root / "synthetic.jsonl"), str(root / "os-sboms")]
    stella_cli("ledger", "ingest", "--tenant", TENANT, "--ledger", str(ledger), "--ingested-at", T0, *folders, check=True)  # fmt: skip
    snapshot = canonical_snapshot(parse_policy(PASS_ALL))
    SnapshotStore(str(ledger)).publish(TENANT, snapshot)
    option = ("--option", f"policy-snapshot={snapshot.id}")
    before = _export(ledger, root / "before", "json:policy", *option)
    db = _export(ledger, root / "db", "trivy:db")
    crapi = shared_data / "sboms" / "cyclonedx" / "crapi.sbom-universal.cdx.json"
    crapi_doc = json.loads(crapi.read_text())
    docs, expect = _vex_documents(
        crapi_doc, [ln for ln in _lines(before) if ln["sbom"]["id"] == _sbom_id(crapi_doc)]
    )
    vex_dir = root / "vex"
    vex_dir.mkdir()
    for name, doc in docs.items():
        (vex_dir / name).write_text(json.dumps(doc))
    stella_cli("ledger", "ingest", "--tenant", TENANT, "--ledger", str(ledger), "--ingested-at", T0, str(vex_dir), check=True)  # fmt: skip
    after = _export(ledger, root / "after", "json:policy", *option)
    cache = root / "cache"
    (cache / "db").mkdir(parents=True)
    for name in ("trivy.db", "metadata.json"):
        shutil.copy(db / "data" / "db" / name, cache / "db" / name)
    records = [json.loads(line) for path in sorted((shared_data / "advisories").glob("*.jsonl.zst"))
               for line in zstandard.ZstdDecompressor().stream_reader(path.open("rb")).read().splitlines()]  # fmt: skip
    return {"before": before, "after": after, "cache": cache, "vex": vex_dir, "expect": expect, "crapi": crapi,
            "context": findings_context(records + synthetic), "root": root, "os_sboms": os_sboms}  # fmt: skip


def _compare(
    trivy_found: set[Finding], policy_found: set[Finding], ctx: Mapping[str, Any]
) -> tuple[list[str], dict[str, int]]:
    unexplained: list[str] = []
    accepted: dict[str, int] = {}
    for side, items in (
        ("trivy-only", trivy_found - policy_found),
        ("policy-only", policy_found - trivy_found),
    ):
        for finding in sorted(items):
            reason = next((name for name, _why, applies in DIFFERENCES if applies(finding, side, ctx)), None)
            if reason is None:
                oracle = explain(finding, "oracle-only" if side == "policy-only" else side, ctx["osv"])
                reason = oracle.name if oracle else None
            if reason is None:
                unexplained.append(f"  {side:12} {finding[0]} {finding[1]} {finding[2]}")
            else:
                accepted[reason] = accepted.get(reason, 0) + 1
    return unexplained, accepted


def _shared_sboms() -> list[Path]:
    from tests.support import DATA

    return sorted((DATA / "sboms" / "cyclonedx").glob("*.json"))


@pytest.mark.parametrize("sbom", _shared_sboms(), ids=lambda p: p.name)
def test_findings_before_vex_equal_trivy(trivy: str, world: dict[str, Any], sbom: Path) -> None:
    doc = json.loads(sbom.read_text())
    ours = {_as_trivy(ln) for ln in _lines(world["before"]) if ln["sbom"]["id"] == _sbom_id(doc)}
    theirs = scan_sbom(trivy, world["cache"], sbom, home=world["root"] / "home")
    unexplained, accepted = _compare(theirs, ours, {"osv": world["context"]})
    print(f"\n{sbom.name}: trivy {len(theirs)}, json:policy {len(ours)}, accepted {accepted}")
    assert not unexplained, "\n".join([f"{sbom.name}: json:policy and Trivy disagree", *unexplained])


@pytest.mark.parametrize("name", OS_SBOMS)
def test_os_findings_equal_trivy(trivy: str, world: dict[str, Any], name: str) -> None:
    """OS packages: json:policy's matches in the release's bucket equal Trivy's OS detector's."""
    sbom = world["os_sboms"][name]
    doc = json.loads(sbom.read_text())
    ours = {_as_trivy(ln) for ln in _lines(world["before"]) if ln["sbom"]["id"] == _sbom_id(doc)}
    theirs = scan_sbom(trivy, world["cache"], sbom, home=world["root"] / "home")
    unexplained, accepted = _compare(theirs, ours, {"osv": world["context"]})
    print(f"\n{name}: trivy {len(theirs)}, json:policy {len(ours)}, accepted {accepted}")
    assert theirs, f"{name}: Trivy found nothing; the OS was not detected or the buckets are missing"
    assert not unexplained, "\n".join([f"{name}: json:policy and Trivy disagree", *unexplained])
    assert accepted.get("os-range-unrepresentable", 0) > 0  # the listed difference is exercised
    if name == "debian":  # a binary matched through its source package (SrcName/SrcVersion)
        assert any(f[0] == "bsdutils" for f in ours & theirs), sorted(ours)


def test_findings_after_vex_equal_trivy_with_vex(trivy: str, world: dict[str, Any]) -> None:
    crapi, expect = world["crapi"], world["expect"]
    doc = json.loads(crapi.read_text())
    lines = [ln for ln in _lines(world["after"]) if ln["sbom"]["id"] == _sbom_id(doc)]
    ours = {_as_trivy(ln) for ln in lines if ln["vex"]["status"] in ("affected", "under_investigation")}
    statuses = {_as_trivy(ln): ln["vex"]["status"] for ln in lines}
    assert set(expect["cleared"]) <= set(statuses) and all(
        statuses[f] in ("not_affected", "fixed") for f in expect["cleared"]
    )
    assert expect["kept"] <= ours
    vex_args = [arg for path in sorted(world["vex"].glob("*.json")) for arg in ("--vex", str(path))]
    theirs = scan_sbom(trivy, world["cache"], crapi, home=world["root"] / "home", extra=vex_args)
    before = scan_sbom(trivy, world["cache"], crapi, home=world["root"] / "home")
    assert expect["cleared"] <= before and not (expect["cleared"] & theirs), (
        "Trivy must apply each VEX format too"
    )
    unexplained, accepted = _compare(
        theirs, ours, {"osv": world["context"], "conflicts": expect["conflicts"]}
    )
    print(f"\n{crapi.name} with VEX: trivy {len(theirs)}, json:policy {len(ours)}, accepted {accepted}")
    assert not unexplained, "\n".join(["json:policy and trivy --vex disagree", *unexplained])
    assert accepted.get("vex-any-not-affected-wins") == 1
