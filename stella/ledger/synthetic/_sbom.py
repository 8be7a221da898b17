"""SBOMs: CycloneDX 1.4/1.5 and SPDX 2.3 describing Java, Node, Python, Go, PHP and container projects.

Component versions come from the same release histories as the advisories, so scanning
a synthetic SBOM against the synthetic ledger finds something. Maven components carry a
SHA-1 derived from their coordinates: the same jar has the same hash in every SBOM,
which is what the Trivy Java DB (SHA-1 -> GAV) is built from.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import NamedTuple

from stella.ledger.synthetic._packages import ECOSYSTEMS, WORDS, package, release
from stella.ledger.synthetic._text import (
    Draw,
    arr,
    day_in,
    enc,
    obj,
    pick,
    quant,
    sha1_like,
    stamp,
    strs,
    table_draw,
    uuid4,
    weighted,
    years,
)

__all__ = ["Component", "Flavour", "FLAVOURS", "components", "cyclonedx", "spdx", "subject"]

_ADJECTIVES = ("Fast", "Small", "Simple", "Secure", "Pluggable", "Modern", "Lightweight", "Portable")
_NOUNS = ("library", "toolkit", "utilities", "bindings", "framework", "helpers", "middleware", "client")
_AUDIENCES = ("Java applications", "Node.js", "Python 3", "Go programs", "PHP projects", "the command line",
              "web servers", "embedded systems", "cloud-native services")  # fmt: skip
# Components per SBOM (the public CycloneDX files hold 40..1663, median ~180).
_COMPONENTS = (5, 30, 70, 190, 420, 850, 1200, 1900, 3500)
_LICENSES = weighted((("MIT", 40), ("Apache-2.0", 30), ("BSD-3-Clause", 10), ("ISC", 6), ("BSD-2-Clause", 4),
                      ("LGPL-2.1-only", 3), ("MPL-2.0", 3), ("EPL-2.0", 2), ("GPL-2.0-only", 2)))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Flavour:
    """What kind of project an SBOM describes, and which tool wrote it."""

    label: str
    ecosystems: tuple[str, ...]  # drawn per component; repeats weight the mix
    tool: tuple[str, str, str]  # vendor, name, version


FLAVOURS = weighted(
    (
        (Flavour("java", ("Maven",), ("OWASP Foundation", "CycloneDX Maven plugin", "2.7.9")), 25),
        (Flavour("node", ("npm",), ("CycloneDX", "cyclonedx-npm", "1.16.1")), 25),
        (Flavour("python", ("PyPI",), ("CycloneDX", "cyclonedx-py", "4.1.2")), 20),
        (Flavour("go", ("Go",), ("CycloneDX", "cyclonedx-gomod", "1.6.0")), 12),
        (Flavour("php", ("Packagist",), ("CycloneDX", "cyclonedx-php-composer", "5.2.0")), 4),
        (Flavour("debian", ("Debian:12",) * 9 + ("PyPI",), ("anchore", "syft", "1.4.1")), 8),
        (Flavour("alpine", ("Alpine:v3.18",) * 8 + ("npm", "PyPI"), ("anchore", "syft", "1.4.1")), 6),
    )
)


_SUBJECT_PURLS = {"java": "pkg:maven/com.example/", "node": "pkg:npm/", "python": "pkg:pypi/",
                  "go": "pkg:golang/example.com/", "php": "pkg:composer/example/"}  # fmt: skip


class Component(NamedTuple):
    ecosystem: str
    name: str
    repo: str
    version: str
    purl: str


def components(u: Draw, flavour: Flavour, count: int | None = None) -> list[Component]:
    """Distinct components of one project (duplicate draws are dropped, as a resolver would)."""
    seen: dict[str, Component] = {}
    mixed = len(flavour.ecosystems) > 1
    eco = flavour.ecosystems[0]
    for _ in range(quant(u, _COMPONENTS) if count is None else count):
        if mixed:
            eco = pick(u, flavour.ecosystems)
        p = package(eco, pick(u, ECOSYSTEMS[eco].names))
        if p.purl not in seen:
            seen[p.purl] = Component(eco, p.name, p.repo, *release(u, eco, p))
    return list(seen.values())


def subject(u: Draw, i: int, flavour: Flavour) -> tuple[str, str, str]:
    """Name, version and purl of what an SBOM (or a VEX document) is about."""
    name = f"{pick(u, WORDS)}-{pick(u, WORDS)}-{i}"
    version = f"{'v' if flavour.label == 'go' else ''}{int(u() * 5)}.{int(u() * 20)}.{int(u() * 10)}"
    if flavour.label in ("debian", "alpine"):
        return name, version, f"pkg:oci/{name}@sha256%3A{sha1_like(u)}{sha1_like(u)[:24]}?tag={version}"
    prefix = _SUBJECT_PURLS[flavour.label]
    return name, version, f"{prefix}{name}@{version}{'?type=jar' if flavour.label == 'java' else ''}"


def _maven_hashes(purl: bytes) -> str:
    """The four digests the CycloneDX Maven plugin writes, derived from the coordinates, so the
    same jar has the same SHA-1 in every SBOM (which is what the Trivy Java DB is built from)."""
    return (
        f'[{{"alg":"MD5","content":"{hashlib.md5(purl).hexdigest()}"}},'
        f'{{"alg":"SHA-1","content":"{hashlib.sha1(purl).hexdigest()}"}},'
        f'{{"alg":"SHA-256","content":"{hashlib.sha256(purl).hexdigest()}"}},'
        f'{{"alg":"SHA-512","content":"{hashlib.sha512(purl).hexdigest()}"}}]'
    )


_DESCRIPTIONS_DRAW = table_draw("descriptions")
_DESCRIPTIONS = tuple(
    enc(f"{pick(_DESCRIPTIONS_DRAW, _ADJECTIVES)} {pick(_DESCRIPTIONS_DRAW, WORDS)} and {pick(_DESCRIPTIONS_DRAW, WORDS)} "
        f"{pick(_DESCRIPTIONS_DRAW, _NOUNS)} for {pick(_DESCRIPTIONS_DRAW, _AUDIENCES)}")
    for _ in range(1024)
)  # fmt: skip


class _Traits(NamedTuple):
    """What a package looks like in any SBOM: one licence, one description, the same links."""

    license: str
    description: str  # encoded, or "" when the package metadata has none
    links: bool
    optional: bool  # Maven scope


@functools.cache
def _traits(eco: str, name: str) -> _Traits:
    draw = table_draw(f"traits:{eco}:{name}")
    description = _DESCRIPTIONS[int(draw() * 1024)] if draw() < 0.6 else ""
    return _Traits(pick(draw, _LICENSES), description, draw() < 0.7, draw() < 0.15)


def _cdx_component(c: Component) -> str:
    """A library component as CycloneDX tools write it: hashes, licence, links, description."""
    t = _traits(c.ecosystem, c.name)
    text = f'{{"bom-ref":"{c.purl}"'
    if t.description:
        text += f',"description":{t.description}'
    if t.links:
        text += f',"externalReferences":[{{"type":"vcs","url":"{c.repo}"}},{{"type":"website","url":"{c.repo}#readme"}}]'
    name = enc(c.name)
    if c.ecosystem == "Maven":
        group, _, artifact = c.name.partition(":")
        text += f',"group":"{group}","hashes":{_maven_hashes(c.purl.encode())}'
        name = f'"{artifact}"'
    elif c.ecosystem == "npm":
        text += f',"hashes":[{{"alg":"SHA-512","content":"{hashlib.sha512(c.purl.encode()).hexdigest()}"}}]'
    elif c.ecosystem == "Go":
        text += f',"hashes":[{{"alg":"SHA-256","content":"{hashlib.sha256(c.purl.encode()).hexdigest()}"}}]'
    text += f',"licenses":[{{"license":{{"id":"{t.license}"}}}}],"name":{name},"purl":"{c.purl}"'
    if c.ecosystem == "Maven":
        text += f',"scope":"{"optional" if t.optional else "required"}"'
    return text + f',"type":"library","version":"{c.version}"}}'


def cyclonedx(u: Draw, i: int) -> str:
    flavour = pick(u, FLAVOURS)
    parts = components(u, flavour)
    name, version, subject_purl = subject(u, i, flavour)
    spec = pick(u, ("1.4", "1.5"))
    vendor, tool, tool_version = flavour.tool
    tools = (
        f'[{{"name":"{tool}","vendor":"{vendor}","version":"{tool_version}"}}]'
        if spec == "1.4"
        else f'{{"components":[{{"group":"{vendor}","name":"{tool}","type":"application","version":"{tool_version}"}}]}}'
    )
    kind = "container" if subject_purl.startswith("pkg:oci/") else "application"
    when = stamp(u, day_in(u, pick(u, years(2019))))
    direct = [c.purl for c in parts[: 3 + int(u() * 20)]]
    deps = [f'{{"dependsOn":{strs(direct)},"ref":"{subject_purl}"}}']
    deps += [
        f'{{"dependsOn":{strs([c.purl for c in parts[k + 1 : k + 1 + int(u() * 4)]])},"ref":"{ref}"}}'
        for k, ref in enumerate(direct)
    ]
    doc = {
        "bomFormat": '"CycloneDX"',
        "components": arr([_cdx_component(c) for c in parts]),
        "dependencies": arr(deps),
        "metadata": (
            f'{{"component":{{"bom-ref":"{subject_purl}","name":"{name}","purl":"{subject_purl}","type":"{kind}",'
            f'"version":"{version}"}},"timestamp":"{when}","tools":{tools}}}'
        ),
        "serialNumber": f'"urn:uuid:{uuid4(u, 1, i)}"',
        "specVersion": f'"{spec}"',
        "version": "1",
    }
    if spec == "1.5":
        doc["$schema"] = '"http://cyclonedx.org/schema/bom-1.5.schema.json"'
    return obj(doc)


def spdx(u: Draw, i: int) -> str:
    flavour = pick(u, FLAVOURS)
    parts = components(u, flavour)
    name, version, subject_purl = subject(u, i, flavour)
    purpose = "CONTAINER" if subject_purl.startswith("pkg:oci/") else "APPLICATION"
    packages = [
        f'{{"SPDXID":"SPDXRef-Root","copyrightText":"NOASSERTION","downloadLocation":"NOASSERTION",'
        f'"externalRefs":[{{"referenceCategory":"PACKAGE-MANAGER","referenceLocator":"{subject_purl}",'
        f'"referenceType":"purl"}}],"filesAnalyzed":false,"licenseConcluded":"NOASSERTION",'
        f'"licenseDeclared":"NOASSERTION","name":"{name}","primaryPackagePurpose":"{purpose}",'
        f'"supplier":"NOASSERTION","versionInfo":"{version}"}}'
    ]
    relationships = [
        '{"relatedSpdxElement":"SPDXRef-Root","relationshipType":"DESCRIBES","spdxElementId":"SPDXRef-DOCUMENT"}'
    ]
    for k, c in enumerate(parts):
        checksum = (
            f'"checksums":[{{"algorithm":"SHA1","checksumValue":"{hashlib.sha1(c.purl.encode()).hexdigest()}"}}],'
            if c.ecosystem == "Maven"
            else ""
        )
        traits = _traits(c.ecosystem, c.name)
        description = f'"description":{traits.description},' if traits.description else ""
        packages.append(
            f'{{"SPDXID":"SPDXRef-Package-{k}",{checksum}"copyrightText":"NOASSERTION",{description}'
            f'"downloadLocation":"NOASSERTION","externalRefs":[{{"referenceCategory":"PACKAGE-MANAGER",'
            f'"referenceLocator":"{c.purl}","referenceType":"purl"}}],"filesAnalyzed":false,"homepage":"{c.repo}",'
            f'"licenseConcluded":"NOASSERTION","licenseDeclared":"{traits.license}","name":{enc(c.name)},'
            f'"supplier":"NOASSERTION","versionInfo":"{c.version}"}}'
        )
        relationships.append(
            f'{{"relatedSpdxElement":"SPDXRef-Package-{k}","relationshipType":"CONTAINS","spdxElementId":"SPDXRef-Root"}}'
        )
    _, tool, tool_version = flavour.tool
    doc = {
        "SPDXID": '"SPDXRef-DOCUMENT"',
        "creationInfo": (
            f'{{"created":"{stamp(u, day_in(u, pick(u, years(2019))))}",'
            f'"creators":["Organization: Example Corp","Tool: {tool}-{tool_version}"],"licenseListVersion":"3.21"}}'
        ),
        "dataLicense": '"CC0-1.0"',
        "documentDescribes": '["SPDXRef-Root"]',
        "documentNamespace": f'"https://sbom.example.org/spdx/{name}-{uuid4(u, 2, i)}"',
        "name": f'"{name}"',
        "packages": arr(packages),
        "relationships": arr(relationships),
        "spdxVersion": '"SPDX-2.3"',
    }
    return obj(doc)
