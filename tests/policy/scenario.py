"""A small synthetic world with hand-checked answers: two SBOMs, eight advisories, four VEX documents.

Every finding below was worked out by hand from the documents (ranges, revisions,
withdrawal, VEX products, timestamps, the policy's rule order and exception expiry);
the comments say why. ``EXPECTED`` is what a json:policy export evaluated at ``AS_OF``
must contain, no more and no less.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["AS_OF", "EXPECTED", "POLICY", "write_scenario"]

AS_OF = "2026-07-01T00:00:00Z"
SERIAL_A = "urn:uuid:aaaaaaaa-0000-4000-8000-000000000001"
CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8
MEDIUM = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N"  # 5.3

POLICY = """\
apiVersion: stella.policy/v1
kind: Policy
metadata: {name: scenario}
defaultVerdict: warn
rules:
  - id: vex-cleared
    verdict: pass
    when: {vexStatus: [not_affected, fixed]}
  - id: kev
    verdict: fail
    when: {ids: [CVE-2099-0005]}
  - id: critical
    verdict: fail
    when: {severity: {atLeast: critical}}
  - id: fixable
    verdict: warn
    when: {fixAvailable: true, severity: {below: medium}}
exceptions:
  - id: EXC-expired
    owner: alice@example.com
    reason: waived until the June release
    expires: 2026-06-01T00:00:00Z
    match: {ids: [CVE-2099-0001]}
  - id: EXC-active
    owner: bob@example.com
    reason: not reachable in our build; vendor fix due in 2027
    expires: 2027-01-01T00:00:00Z
    verdict: warn
    match: {purls: ["pkg:golang/github.com/acme/*"]}
"""

# (sbom, purl, vulnerability) -> (status, verdict, rule, exception, expired exceptions,
# conflicting statements, advisories)
EXPECTED: dict[tuple[str, str, str], tuple[str, str, str, str | None, tuple[str, ...], int, tuple[str, ...]]] = {
    # In PYSEC's [3.0, 3.2.5) and in GHSA's listed versions: one finding under the CVE, two
    # advisories. CSAF's not_affected names django with a repository_url qualifier the
    # component lacks, so it does not apply. CVSS 9.8 is critical -> rule "critical";
    # EXC-expired matches but expired on 2026-06-01, before AS_OF.
    (SERIAL_A, "pkg:pypi/Django@3.2.0", "CVE-2099-0001"): (
        "affected", "fail", "critical", None, ("EXC-expired",), 0, ("GHSA-aaaa-bbbb-cccc", "PYSEC-2099-1"),
    ),
    # Below the fix 4.17.21; CSAF says fixed for every lodash version (no version in the purl).
    (SERIAL_A, "pkg:npm/lodash@4.17.20", "GHSA-lodash-0001"): (
        "fixed", "pass", "vex-cleared", None, (), 0, ("GHSA-lodash-0001",),
    ),
    # last_affected 1.5.0 is inclusive; CycloneDX VEX points at this component by BOM-Link.
    (SERIAL_A, "pkg:maven/org.example/widget@1.5.0?type=jar", "CVE-2099-0004"): (
        "not_affected", "pass", "vex-cleared", None, (), 0, ("GHSA-widget-0001",),
    ),
    # OpenVEX not_affected (March, any version) then affected (April, this version): the
    # later one wins and the earlier is a conflict. KEV list -> fail, overridden by EXC-active.
    (SERIAL_A, "pkg:golang/github.com/acme/lib@v1.4.0", "CVE-2099-0005"): (
        "affected", "warn", "kev", "EXC-active", (), 1, ("GO-2099-0005",),
    ),
    # SBOM B: the BOM-Link names SBOM A only, so this widget stays affected; no fix, medium:
    # no rule holds -> the default verdict.
    ("https://example.com/spdx-b", "pkg:maven/org.example/widget@1.2.0", "CVE-2099-0004"): (
        "affected", "warn", "default", None, (), 0, ("GHSA-widget-0001",),
    ),
    # Fixed in 2.0.0, severity LOW -> rule "fixable".
    ("https://example.com/spdx-b", "pkg:npm/left-pad@1.0.0", "GHSA-leftpad-0008"): (
        "affected", "warn", "fixable", None, (), 0, ("GHSA-leftpad-0008",),
    ),
    # Not findings: django 4.0.0 and lodash 4.17.21 (SBOM B) are outside every range;
    # safe-pkg 2.0.0 was in PYSEC-2099-7's first revision only; PYSEC-2099-6 is withdrawn.
}  # fmt: skip


def _osv(id_: str, modified: str, eco: str, name: str, ranges: list[Any], **more: Any) -> dict[str, Any]:
    affected: dict[str, Any] = {"package": {"ecosystem": eco, "name": name}, "ranges": ranges}
    if "versions" in more:
        affected["versions"] = more.pop("versions")
    return {
        "id": id_,
        "modified": modified,
        "published": "2026-01-01T00:00:00Z",
        "affected": [affected],
        **more,
    }


def _range(kind: str, *events: tuple[str, str]) -> dict[str, Any]:
    return {"type": kind, "events": [{k: v} for k, v in events]}


def advisories() -> list[dict[str, Any]]:
    return [
        _osv("PYSEC-2099-1", "2026-01-02T00:00:00Z", "PyPI", "django",
             [_range("ECOSYSTEM", ("introduced", "3.0"), ("fixed", "3.2.5"))],
             aliases=["CVE-2099-0001"], severity=[{"type": "CVSS_V3", "score": CRITICAL}]),
        _osv("GHSA-aaaa-bbbb-cccc", "2026-01-03T00:00:00Z", "PyPI", "Django", [], versions=["3.2.0"],
             aliases=["CVE-2099-0001"], database_specific={"severity": "HIGH"}),
        _osv("GHSA-lodash-0001", "2026-01-04T00:00:00Z", "npm", "lodash",
             [_range("SEMVER", ("introduced", "0"), ("fixed", "4.17.21"))]),
        _osv("GHSA-widget-0001", "2026-01-05T00:00:00Z", "Maven", "org.example:widget",
             [_range("ECOSYSTEM", ("introduced", "1.0"), ("last_affected", "1.5.0"))],
             aliases=["CVE-2099-0004"], severity=[{"type": "CVSS_V3", "score": MEDIUM}]),
        _osv("GO-2099-0005", "2026-01-06T00:00:00Z", "Go", "github.com/acme/lib",
             [_range("SEMVER", ("introduced", "1.0.0"), ("fixed", "1.5.0"))], aliases=["CVE-2099-0005"]),
        _osv("PYSEC-2099-6", "2026-01-07T00:00:00Z", "PyPI", "django",
             [_range("ECOSYSTEM", ("introduced", "0"))], withdrawn="2026-01-08T00:00:00Z"),
        _osv("PYSEC-2099-7", "2026-01-01T00:00:00Z", "PyPI", "safe-pkg",
             [_range("ECOSYSTEM", ("introduced", "0"), ("fixed", "3.0"))]),
        _osv("PYSEC-2099-7", "2026-02-01T00:00:00Z", "PyPI", "safe-pkg",
             [_range("ECOSYSTEM", ("introduced", "0"), ("fixed", "1.0"))]),
        _osv("GHSA-leftpad-0008", "2026-01-09T00:00:00Z", "npm", "left-pad",
             [_range("SEMVER", ("introduced", "0"), ("fixed", "2.0.0"))], database_specific={"severity": "LOW"}),
    ]  # fmt: skip


def sbom_a() -> dict[str, Any]:
    def comp(ref: str, name: str, version: str, purl: str, group: str | None = None) -> dict[str, Any]:
        out = {"type": "library", "bom-ref": ref, "name": name, "version": version, "purl": purl}
        return {**out, "group": group} if group else out

    return {
        "bomFormat": "CycloneDX", "specVersion": "1.5", "serialNumber": SERIAL_A, "version": 1,
        "metadata": {"timestamp": "2026-02-01T00:00:00Z",
                     "component": {"type": "application", "name": "app", "version": "1.0.0", "bom-ref": "app",
                                   "purl": "pkg:npm/app@1.0.0"}},
        "components": [
            comp("django", "Django", "3.2.0", "pkg:pypi/Django@3.2.0"),
            comp("lodash", "lodash", "4.17.20", "pkg:npm/lodash@4.17.20"),
            comp("widget", "widget", "1.5.0", "pkg:maven/org.example/widget@1.5.0?type=jar", "org.example"),
            comp("lib", "github.com/acme/lib", "v1.4.0", "pkg:golang/github.com/acme/lib@v1.4.0"),
            comp("safe", "safe-pkg", "2.0.0", "pkg:pypi/safe-pkg@2.0.0"),
        ],
    }  # fmt: skip


def sbom_b() -> dict[str, Any]:
    def package(n: int, name: str, version: str, purl: str) -> dict[str, Any]:
        return {"SPDXID": f"SPDXRef-{n}", "name": name, "versionInfo": version, "downloadLocation": "NOASSERTION",
                "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                                  "referenceLocator": purl}]}  # fmt: skip

    return {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT", "name": "spdx-b",
        "documentNamespace": "https://example.com/spdx-b",
        "creationInfo": {"created": "2026-02-02T00:00:00Z", "creators": ["Tool: test"]},
        "packages": [
            package(1, "django", "4.0.0", "pkg:pypi/django@4.0.0"),
            package(2, "lodash", "4.17.21", "pkg:npm/lodash@4.17.21"),
            package(3, "widget", "1.2.0", "pkg:maven/org.example/widget@1.2.0"),
            package(4, "left-pad", "1.0.0", "pkg:npm/left-pad@1.0.0"),
        ],
    }  # fmt: skip


def vex_documents() -> dict[str, dict[str, Any]]:
    openvex = "https://openvex.dev/ns/v0.2.0"
    return {
        "openvex-march.json": {
            "@context": openvex, "@id": "https://example.com/vex/march", "author": "acme",
            "timestamp": "2026-03-01T00:00:00Z", "version": 1,
            "statements": [{"vulnerability": {"name": "CVE-2099-0005"}, "products": [{"@id": "pkg:golang/github.com/acme/lib"}],
                            "status": "not_affected", "justification": "vulnerable_code_not_in_execute_path"}],
        },
        "openvex-april.json": {
            "@context": openvex, "@id": "https://example.com/vex/april", "author": "acme",
            "timestamp": "2026-04-01T00:00:00Z", "version": 1,
            "statements": [{"vulnerability": {"name": "CVE-2099-0005"},
                            "products": [{"@id": "pkg:golang/github.com/acme/lib@v1.4.0"}], "status": "affected",
                            "action_statement": "upgrade to v1.5.0"}],
        },
        "cyclonedx-vex.json": {
            "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
            "serialNumber": "urn:uuid:bbbbbbbb-0000-4000-8000-000000000002",
            "metadata": {"timestamp": "2026-03-15T00:00:00Z"},
            "vulnerabilities": [{"id": "CVE-2099-0004",
                                 "analysis": {"state": "not_affected", "justification": "code_not_reachable"},
                                 "affects": [{"ref": f"urn:cdx:{SERIAL_A[len('urn:uuid:'):]}/1#widget"}]}],
        },
        "csaf.json": {
            "document": {"category": "csaf_vex", "csaf_version": "2.0", "title": "scenario",
                         "publisher": {"category": "vendor", "name": "acme", "namespace": "https://example.com"},
                         "tracking": {"id": "ACME-VEX-1", "status": "final", "version": "1",
                                      "initial_release_date": "2026-03-20T00:00:00Z",
                                      "current_release_date": "2026-03-20T00:00:00Z",
                                      "revision_history": [{"date": "2026-03-20T00:00:00Z", "number": "1", "summary": "x"}]}},
            "product_tree": {"branches": [{"category": "vendor", "name": "acme", "branches": [
                {"category": "product_name", "name": "django-internal",
                 "product": {"name": "django internal", "product_id": "P-DJANGO",
                             "product_identification_helper": {
                                 "purl": "pkg:pypi/django@3.2.0?repository_url=https://pypi.internal.example"}}},
                {"category": "product_name", "name": "lodash",
                 "product": {"name": "lodash", "product_id": "P-LODASH",
                             "product_identification_helper": {"purl": "pkg:npm/lodash"}}}]}]},
            "vulnerabilities": [
                {"cve": "CVE-2099-0001", "product_status": {"known_not_affected": ["P-DJANGO"]},
                 "flags": [{"label": "vulnerable_code_not_present", "product_ids": ["P-DJANGO"]}]},
                {"ids": [{"system_name": "GHSA", "text": "GHSA-lodash-0001"}], "product_status": {"fixed": ["P-LODASH"]}},
            ],
        },
    }  # fmt: skip


def write_scenario(folder: Path) -> Path:
    """The scenario's documents as files a user would ingest."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "advisories.jsonl").write_text("".join(json.dumps(a) + "\n" for a in advisories()))
    (folder / "sbom-a.cdx.json").write_text(json.dumps(sbom_a()))
    (folder / "sbom-b.spdx.json").write_text(json.dumps(sbom_b()))
    for name, doc in vex_documents().items():
        (folder / name).write_text(json.dumps(doc))
    return folder
