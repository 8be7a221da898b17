"""VEX: OpenVEX, CycloneDX VEX and CSAF 2.0 ``csaf_vex`` documents.

Statements name vulnerable dependencies by versioned purls from the shared release
histories and CVEs from the same number space as the advisories, so at ledger scale
VEX, SBOMs and advisories overlap the way real evidence does. The CSAF documents keep
the VEX profile's rules (CSAF 2.0 section 4.5 and tests 6.1.27.x): a product status on
every vulnerability, a flag for each ``known_not_affected`` product and a remediation
for each ``known_affected`` or ``fixed`` one.
"""

from __future__ import annotations

from stella.ledger.synthetic._osv import WEAKNESSES
from stella.ledger.synthetic._packages import ECOSYSTEMS, package, release
from stella.ledger.synthetic._sbom import FLAVOURS, subject
from stella.ledger.synthetic._text import (
    DAYS,
    Draw,
    arr,
    cve,
    cvss,
    day_in,
    enc,
    ghsa,
    later,
    obj,
    pick,
    popular,
    prose,
    quant,
    sha1_like,
    stamp,
    strs,
    uuid4,
    weighted,
    years,
)

__all__ = ["csaf", "cyclonedx_vex", "openvex"]

_STATEMENTS = (1, 1, 2, 4, 10, 20, 33, 60, 120)  # OpenVEX statements per document
_CDX_VULNS = (1, 1, 1, 2, 4, 8, 12, 19, 40)
_CSAF_PRODUCTS = (1, 1, 2, 3, 6, 12, 18, 30, 40)
_CSAF_VULNS = (1, 1, 1, 1, 2, 3, 5, 19, 25)
_TARGET_ECOSYSTEMS = ("Go", "Go", "npm", "Maven", "PyPI", "Debian:12", "Alpine:v3.18")
_OPENVEX_STATUS = weighted(
    (("not_affected", 60), ("fixed", 20), ("affected", 10), ("under_investigation", 10))
)
_OPENVEX_JUSTIFICATIONS = (
    "component_not_present", "vulnerable_code_not_present", "vulnerable_code_not_in_execute_path",
    "vulnerable_code_cannot_be_controlled_by_adversary", "inline_mitigations_already_exist",
)  # fmt: skip
_IMPACT_STATEMENTS = (
    "Govulncheck determined that the vulnerable code isn't called",
    "The vulnerable function is not used by this product.",
    "The affected feature is disabled at build time.",
    "Input reaching the vulnerable code is validated by the caller.",
)
_CDX_STATES = weighted(
    (("not_affected", 50), ("exploitable", 15), ("resolved", 15), ("in_triage", 15), ("false_positive", 5))
)
_CDX_JUSTIFICATIONS = ("code_not_present", "code_not_reachable", "requires_configuration", "requires_dependency",
                       "requires_environment", "protected_by_compiler", "protected_at_runtime")  # fmt: skip
_CDX_DETAILS = (
    "Automated dataflow analysis and manual code review indicate the vulnerable code is not reachable.",
    "The affected class is excluded from the shipped artifact.",
    "Fixed by upgrading the dependency in the current release.",
    "The product is affected; customers are advised to upgrade to the latest release.",
    "Under investigation by the product security team.",
)
_CDX_TEXT = (80, 150, 250, 400, 700, 1100, 1500, 2200, 3000)  # vulnerability descriptions
_CSAF_STATUS = ("known_not_affected", "known_not_affected", "fixed", "known_affected", "under_investigation")
_VENDORS = ("Example Corp", "Acme Software", "Initech", "Globex Security", "Umbrella Platform", "Hooli Cloud")
_LEGAL = (
    "This synthetic document was generated for testing. It describes no real product; any "
    "resemblance of names, versions or identifiers to real ones is a property of the generator."
)


def _target(u: Draw) -> tuple[str, str]:
    """A vulnerable dependency (versioned purl) and a CVE it is known for."""
    eco = pick(u, _TARGET_ECOSYSTEMS)
    return release(u, eco, package(eco, popular(u, ECOSYSTEMS[eco].names)))[1], cve(u, pick(u, years(2015)))


def openvex(u: Draw, i: int) -> str:
    day = day_in(u, pick(u, years(2022)))
    product = subject(u, i, pick(u, FLAVOURS))[2]
    statements = []
    for _ in range(quant(u, _STATEMENTS)):
        purl, cve_id = _target(u)
        status = pick(u, _OPENVEX_STATUS)
        members = {
            "products": f'[{{"@id":"{product}","subcomponents":[{{"@id":"{purl}"}}]}}]',
            "status": f'"{status}"',
            "timestamp": f'"{stamp(u, later(u, day), "us")}"',
            "vulnerability": f'{{"name":"{cve_id}"}}'
            if u() < 0.6
            else f'{{"aliases":["{ghsa(u)}"],"name":"{cve_id}"}}',
        }
        if status == "not_affected":
            members["justification"] = f'"{pick(u, _OPENVEX_JUSTIFICATIONS)}"'
            members["impact_statement"] = enc(pick(u, _IMPACT_STATEMENTS))
        elif status == "affected":
            members["action_statement"] = '"Upgrade to the latest release of the product."'
        statements.append(obj(members))
    doc = {
        "@context": '"https://openvex.dev/ns/v0.2.0"',
        "@id": f'"https://openvex.dev/docs/synthetic/vex-{i:08x}{sha1_like(u)}{sha1_like(u)[:16]}"',
        "author": f'"{pick(u, _VENDORS)} Security Team"',
        "statements": arr(statements),
        "timestamp": f'"{stamp(u, day, "us", "-03:00" if u() < 0.2 else "Z")}"',
        "version": str(1 + int(u() * u() * 12)),
    }
    if u() < 0.4:
        doc["last_updated"] = f'"{stamp(u, later(u, day), "us")}"'
    return obj(doc)


def cyclonedx_vex(u: Draw, i: int) -> str:
    """A BOM-linked CycloneDX VEX: vulnerabilities whose ``affects`` point into another BOM."""
    target = uuid4(u, 3, i)
    vulns = []
    for _ in range(quant(u, _CDX_VULNS)):
        purl, cve_id = _target(u)
        state = pick(u, _CDX_STATES)
        analysis = {"state": f'"{state}"', "detail": enc(pick(u, _CDX_DETAILS))}
        if state == "not_affected":
            analysis["justification"] = f'"{pick(u, _CDX_JUSTIFICATIONS)}"'
            analysis["response"] = '["will_not_fix"]'
        elif state == "exploitable":
            analysis["response"] = '["update"]'
        vector, label = cvss(u)
        weakness, cwe = pick(u, WEAKNESSES)
        vuln = {
            "affects": f'[{{"ref":"urn:cdx:{target}/1#{purl}"}}]',
            "analysis": obj(analysis),
            "id": f'"{cve_id}"',
            "ratings": f'[{{"method":"CVSSv31","severity":"{label.lower()}","source":{{"name":"NVD"}},'
            f'"vector":"{vector.removeprefix("CVSS:3.1/")}"}}]',
            "source": f'{{"name":"NVD","url":"https://nvd.nist.gov/vuln/detail/{cve_id}"}}',
        }
        if u() < 0.5:  # the richer, analysis-tool style of the CycloneDX examples
            day = day_in(u, pick(u, years(2018)))
            vuln["advisories"] = (
                f'[{{"title":"Fix commit","url":"https://github.com/{pick(u, _VENDORS).split()[0].lower()}/{cve_id.lower()}"}}]'
            )
            vuln["cwes"] = f"[{cwe.removeprefix('CWE-')}]"
            vuln["description"] = enc(
                prose(u, f"{weakness} in {purl.split('@')[0]}.", quant(u, _CDX_TEXT), False)
            )
            vuln["published"] = f'"{stamp(u, day, "ms")}"'
            vuln["recommendation"] = '"Upgrade to a fixed version of the component."'
            vuln["updated"] = f'"{stamp(u, later(u, day), "ms")}"'
        vulns.append(obj(vuln))
    doc = {
        "bomFormat": '"CycloneDX"',
        "metadata": f'{{"timestamp":"{stamp(u, day_in(u, pick(u, years(2021))))}"}}',
        "serialNumber": f'"urn:uuid:{uuid4(u, 4, i)}"',
        "specVersion": f'"{pick(u, ("1.4", "1.5"))}"',
        "version": str(1 + int(u() * 3)),
        "vulnerabilities": arr(vulns),
    }
    return obj(doc)


def _csaf_vulnerability(u: Draw, year: int, vendor: str, products: list[tuple[str, str]]) -> str:
    weakness, cwe = pick(u, WEAKNESSES)
    status: dict[str, list[str]] = {}
    for pid, _ in products:
        status.setdefault(pick(u, _CSAF_STATUS), []).append(pid)
    cve_id = cve(u, year)
    title = f"{weakness} in {vendor} products"
    day = day_in(u, year)
    description = prose(u, f"{title}.", quant(u, _CDX_TEXT), False)
    members = {
        "cve": f'"{cve_id}"',
        "cwe": f'{{"id":"{cwe}","name":"{weakness}"}}',
        "discovery_date": f'"{stamp(u, day, "s", "+00:00")}"',
        "ids": f'[{{"system_name":"{vendor} Tracker","text":"{int(u() * 2000000)}"}}]',
        "notes": f'[{{"category":"description","text":{enc(description)},"title":"Vulnerability description"}},'
        f'{{"category":"summary","text":{enc(title)},"title":"Vulnerability summary"}}]',
        "product_status": obj({k: strs(v) for k, v in status.items()}),
        "references": f'[{{"category":"self","summary":"Canonical URL","url":"https://{vendor.split()[0].lower()}.example.com/cve/{cve_id}"}},'
        f'{{"category":"external","summary":"{cve_id}","url":"https://nvd.nist.gov/vuln/detail/{cve_id}"}}]',
        "release_date": f'"{stamp(u, later(u, day), "s", "+00:00")}"',
        "threats": f'[{{"category":"impact","details":"{pick(u, ("Low", "Moderate", "Important", "Critical"))}",'
        f'"product_ids":{strs([pid for pid, _ in products])}}}]',
        "title": enc(title),
    }
    if "known_not_affected" in status:
        members["flags"] = (
            f'[{{"label":"vulnerable_code_not_present","product_ids":{strs(status["known_not_affected"])}}}]'
        )
    fixes = []
    if "known_affected" in status:
        fixes.append(
            f'{{"category":"no_fix_planned","details":"Out of support scope","product_ids":{strs(status["known_affected"])}}}'
        )
    if "fixed" in status:
        fixes.append(
            f'{{"category":"vendor_fix","details":"Upgrade to the fixed release.","product_ids":{strs(status["fixed"])}}}'
        )
    if fixes:
        members["remediations"] = arr(fixes)
    return obj(members)


def csaf(u: Draw, i: int) -> str:
    day = day_in(u, pick(u, years(2019)))
    vendor = pick(u, _VENDORS)
    site = f"https://{vendor.split()[0].lower()}.example.com"
    year = int(DAYS[day][:4])
    tracking_id = f"SYN-CSAF-{year}-{i:07d}"
    products = [(f"CSAFPID-{k + 1:04d}", _target(u)[0]) for k in range(quant(u, _CSAF_PRODUCTS))]
    versions = arr(
        f'{{"category":"product_version","name":"{purl.rsplit("@", 1)[-1].split("?")[0]}","product":'
        f'{{"name":"{purl}","product_id":"{pid}","product_identification_helper":{{"purl":"{purl}"}}}}}}'
        for pid, purl in products
    )
    released = stamp(u, day, "s", "+00:00")
    current = stamp(u, later(u, day), "s", "+00:00")
    document = (
        f'{{"category":"csaf_vex","csaf_version":"2.0",'
        f'"distribution":{{"tlp":{{"label":"WHITE","url":"https://www.first.org/tlp/"}}}},"lang":"en",'
        f'"notes":[{{"category":"legal_disclaimer","text":"{_LEGAL}","title":"Terms of Use"}},'
        f'{{"category":"summary","text":{enc(pick(u, _CDX_DETAILS))},"title":"Summary"}}],'
        f'"publisher":{{"category":"vendor","name":"{vendor}","namespace":"{site}"}},'
        f'"references":[{{"category":"self","summary":"Canonical URL","url":"{site}/csaf/{tracking_id.lower()}.json"}},'
        f'{{"category":"external","summary":"CVE list","url":"https://www.cve.org/"}}],'
        f'"title":"{vendor} VEX {tracking_id}",'
        f'"tracking":{{"current_release_date":"{current}","generator":{{"date":"{current}",'
        f'"engine":{{"name":"stella-synthetic","version":"1"}}}},"id":"{tracking_id}",'
        f'"initial_release_date":"{released}","revision_history":[{{"date":"{released}","number":"1",'
        f'"summary":"Initial version"}}],"status":"final","version":"1"}}}}'
    )
    return obj(
        {
            "document": document,
            "product_tree": f'{{"branches":[{{"branches":[{{"branches":{versions},"category":"product_name",'
            f'"name":"{vendor} Platform"}}],"category":"vendor","name":"{vendor}"}}]}}',
            "vulnerabilities": arr(
                _csaf_vulnerability(u, year, vendor, products) for _ in range(quant(u, _CSAF_VULNS))
            ),
        }
    )
