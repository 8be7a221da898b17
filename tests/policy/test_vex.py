"""VEX statements from each format, product matching, and time-ordered resolution (pure functions)."""

from __future__ import annotations

import json
from typing import Any

from stella.findings.components import Component
from stella.findings.purls import parse_purl
from stella.findings.vex import applies, resolve, vex_statements
from stella.ledger.ingest import to_record
from stella.model import LedgerRecord

SERIAL = "urn:uuid:aaaaaaaa-0000-4000-8000-000000000001"


def _component(
    purl: str, bom_ref: str | None = "ref-1", subject: str | None = "pkg:oci/app@sha256%3Aabc"
) -> Component:
    ref = parse_purl(purl)
    assert ref is not None
    return Component("sbom", "sha256:" + "0" * 64, SERIAL, subject, bom_ref, ref.name, ref)


def _record(doc: dict[str, Any]) -> LedgerRecord:
    return to_record(json.dumps(doc).encode(), tenant="acme", source="t", ingested_at="2026-06-01T00:00:00Z")


def _openvex(statements: list[dict[str, Any]], when: str = "2026-03-01T00:00:00Z") -> LedgerRecord:
    return _record({"@context": "https://openvex.dev/ns/v0.2.0", "@id": f"https://example.com/{when}",
                    "author": "t", "timestamp": when, "version": 1, "statements": statements})  # fmt: skip


def test_openvex_products_match_with_and_without_version_and_qualifiers() -> None:
    def stmt(product: str) -> dict[str, Any]:
        return {"vulnerability": {"name": "CVE-1", "aliases": ["GHSA-1"]}, "products": [{"@id": product}],
                "status": "not_affected", "justification": "component_not_present"}  # fmt: skip

    comp = _component("pkg:maven/org.a/b@1.0?type=jar")
    cases = {
        "pkg:maven/org.a/b": True,  # no version: every version
        "pkg:maven/org.a/b@1.0": True,  # no qualifiers: any
        "pkg:maven/org.a/b@1.0?type=jar": True,
        "pkg:maven/org.a/b@1.0?type=pom": False,  # a qualifier the component does not have
        "pkg:maven/org.a/b@1.1": False,
        "pkg:maven/org.a/c@1.0": False,
        "pkg:npm/b@1.0": False,
    }
    for product, expected in cases.items():
        (statement,) = vex_statements(_openvex([stmt(product)]))
        assert applies(statement, comp, "CVE-1") is expected, product
        assert applies(statement, comp, "GHSA-1") is expected, product  # the statement's alias
        assert applies(statement, comp, "CVE-2") is False


def test_openvex_subcomponents_need_the_sbom_subject_as_product() -> None:
    statement = {"vulnerability": {"name": "CVE-1"}, "status": "fixed",
                 "products": [{"@id": "pkg:oci/app@sha256%3Aabc", "subcomponents": [{"@id": "pkg:pypi/django@3.2.0"}]}]}  # fmt: skip
    (parsed,) = vex_statements(_openvex([statement]))
    assert applies(parsed, _component("pkg:pypi/Django@3.2.0"), "CVE-1")  # PEP 503 names
    assert not applies(
        parsed, _component("pkg:pypi/django@3.2.0", subject="pkg:oci/other@sha256%3Aabc"), "CVE-1"
    )
    assert not applies(parsed, _component("pkg:pypi/flask@3.2.0"), "CVE-1")


def test_cyclonedx_bom_links_and_local_refs_and_csaf_relationships() -> None:
    cdx = _record({
        "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1, "serialNumber": "urn:uuid:bbbbbbbb-0000-4000-8000-000000000002",
        "components": [{"type": "library", "name": "b", "bom-ref": "local-b", "purl": "pkg:npm/b@2.0.0"}],
        "vulnerabilities": [
            {"id": "CVE-1", "analysis": {"state": "resolved"}, "affects": [{"ref": f"urn:cdx:{SERIAL[9:]}/1#ref-1"}]},
            {"id": "CVE-2", "analysis": {"state": "exploitable"}, "affects": [{"ref": "local-b"}]},
            {"id": "CVE-3", "analysis": {"state": "not_a_state"}, "affects": [{"ref": "local-b"}]},
        ],
    })  # fmt: skip
    first, second = vex_statements(cdx)
    assert (first.status, second.status) == ("fixed", "affected")
    assert applies(first, _component("pkg:npm/a@1.0.0", bom_ref="ref-1"), "CVE-1")
    assert not applies(first, _component("pkg:npm/a@1.0.0", bom_ref="ref-2"), "CVE-1")
    assert applies(second, _component("pkg:npm/b@2.0.0", bom_ref=None), "CVE-2")
    csaf = _record({
        "document": {"category": "csaf_vex", "csaf_version": "2.0", "title": "t",
                     "publisher": {"category": "vendor", "name": "v", "namespace": "https://example.com"},
                     "tracking": {"id": "T-1", "status": "final", "version": "1", "initial_release_date": "2026-01-01T00:00:00Z",
                                  "current_release_date": "2026-01-02T00:00:00Z",
                                  "revision_history": [{"date": "2026-01-02T00:00:00Z", "number": "1", "summary": "x"}]}},
        "product_tree": {
            "full_product_names": [{"name": "lib", "product_id": "LIB", "product_identification_helper": {"purl": "pkg:golang/example.com/lib@v1.2.0"}},
                                   {"name": "app", "product_id": "APP"}],
            "relationships": [{"category": "default_component_of", "product_reference": "LIB", "relates_to_product_reference": "APP",
                               "full_product_name": {"name": "lib in app", "product_id": "APP:LIB"}}],
        },
        "vulnerabilities": [{"cve": "CVE-9", "product_status": {"known_not_affected": ["APP:LIB"], "under_investigation": ["APP"]},
                             "flags": [{"label": "vulnerable_code_not_present", "product_ids": ["APP:LIB"]}]}],
    })  # fmt: skip
    (only,) = vex_statements(csaf)  # APP has no purl: nothing to match it with
    assert (only.status, only.justification, only.timestamp) == (
        "not_affected",
        "vulnerable_code_not_present",
        "2026-01-02T00:00:00Z",
    )
    assert applies(only, _component("pkg:golang/example.com/lib@v1.2.0"), "CVE-9")


def test_latest_statement_wins_and_conflicts_are_kept() -> None:
    def doc(status: str, when: str) -> LedgerRecord:
        return _openvex(
            [{"vulnerability": {"name": "CVE-1"}, "products": [{"@id": "pkg:npm/a"}], "status": status}], when
        )

    march = vex_statements(doc("not_affected", "2026-03-01T00:00:00Z"))
    april = vex_statements(doc("affected", "2026-04-01T00:00:00Z"))
    may = vex_statements(doc("under_investigation", "2026-05-01T00:00:00Z"))
    for order in ([*march, *april, *may], [*may, *march, *april], [*april, *may, *march]):
        resolution = resolve(order)
        assert resolution.status == "under_investigation"
        assert [s.status for s in resolution.statements] == [
            "not_affected",
            "affected",
            "under_investigation",
        ]
        assert [s.status for s in resolution.conflicts] == ["not_affected", "affected"]
    assert resolve([]).status == "affected" and resolve([]).effective is None
    agreeing = resolve([*march, *vex_statements(doc("not_affected", "2026-06-01T00:00:00Z"))])
    assert agreeing.status == "not_affected" and agreeing.conflicts == ()
