"""SBOM records -> the components that can be matched (a purl we can key, with a version).

CycloneDX components are walked at every depth (nested components are installed too)
plus ``metadata.component``; SPDX packages contribute their ``purl`` external
references. A component without a purl, with a purl of an ecosystem we don't match, or
an OS package of a release we cannot tell, is left out, not guessed at: matching by
bare name, or against some other release's advisories, would invent findings.

OS packages are placed by the SBOM's operating system, read as Trivy reads it: the
first CycloneDX component of type ``operating-system`` (name = family, version =
release), or the SPDX package whose ``primaryPackagePurpose`` is ``OPERATING-SYSTEM``.
Distro advisories name source packages (``openssl``, not the binary ``libssl3``); where
Trivy's detector for the distro looks them up by source, a CycloneDX component's
``aquasecurity:trivy:SrcName``/``SrcVersion``/``SrcRelease``/``SrcEpoch`` properties (as
Trivy writes them) give the source name and version, else the binary's are used, as Trivy
does for third-party SBOMs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from stella.documents.interface import opt_str, walk_dicts
from stella.findings.purls import PackageRef, parse_purl
from stella.model import DocFormat, Kind, LedgerRecord

__all__ = ["Component", "is_sbom_record", "sbom_components"]


@dataclass(frozen=True, slots=True)
class Component:
    """One matchable component of one SBOM record."""

    sbom: str  # the SBOM record's upstream id
    sbom_digest: str
    serial: str | None  # CycloneDX serialNumber, for BOM-Link VEX references
    subject: str | None  # the SBOM's own purl (metadata.component), for OpenVEX subcomponents
    bom_ref: str | None
    name: str  # as the SBOM names it (group/name)
    ref: PackageRef
    source_version: str | None = None  # an OS package's source version, where the distro compares it

    @property
    def version(self) -> str:
        assert self.ref.version is not None
        return self.ref.version

    @property
    def matched_version(self) -> str:
        """The version advisories are compared with (the installed one, unless the source's)."""
        return self.source_version or self.version


def is_sbom_record(record: LedgerRecord) -> bool:
    return record.kind is Kind.SBOM and record.format in (DocFormat.CYCLONEDX, DocFormat.SPDX)


def _operating_system(doc: Mapping[str, Any], cyclonedx: bool) -> tuple[str, str] | None:
    """(family, release) of the SBOM's first operating-system component, if any."""
    if cyclonedx:
        meta = doc.get("metadata")
        top = doc.get("components")
        found = [meta.get("component")] if isinstance(meta, Mapping) else []
        found += top if isinstance(top, list) else []  # document order first, then nested ones
        found += list(walk_dicts(top, "components"))
        kind, name_field, version_field = "type", "name", "version"
        wanted = "operating-system"
    else:
        packages = doc.get("packages")
        found = [p for p in packages if isinstance(p, Mapping)] if isinstance(packages, list) else []
        kind, name_field, version_field = "primaryPackagePurpose", "name", "versionInfo"
        wanted = "OPERATING-SYSTEM"
    for comp in found:
        if isinstance(comp, Mapping) and comp.get(kind) == wanted:
            family, release = opt_str(comp, name_field), opt_str(comp, version_field)
            return (family, release or "") if family else None
    return None


_TRIVY = "aquasecurity:trivy:"
_Found = tuple[str, str | None, str | None, Mapping[str, str]]


def _trivy_properties(comp: Mapping[str, Any]) -> dict[str, str]:
    props = comp.get("properties")
    out: dict[str, str] = {}
    for prop in props if isinstance(props, list) else []:
        name = prop.get("name") if isinstance(prop, Mapping) else None
        if isinstance(name, str) and name.startswith(_TRIVY) and isinstance(prop.get("value"), str):
            out.setdefault(name[len(_TRIVY) :], prop["value"])
    return out


def _with_source(ref: PackageRef, props: Mapping[str, str]) -> tuple[PackageRef, str | None]:
    """The ref keyed by the source package and the source version, where the distro's detector uses them.

    Trivy fills what an SBOM leaves out from the binary package: no ``SrcName`` means the
    binary's name, no ``SrcVersion`` the binary's whole version.
    """
    release = ref.release
    if release is None or not (release.source_name or release.source_version):
        return ref, None
    source = props.get("SrcName")
    if release.source_name and source:
        ref = replace(ref, key=(ref.key[0], source))
    version = props.get("SrcVersion")
    if not release.source_version or not version:
        return ref, None
    if props.get("SrcRelease"):
        version = f"{version}-{props['SrcRelease']}"
    if props.get("SrcEpoch", "0") not in ("", "0"):
        version = f"{props['SrcEpoch']}:{version}"
    return ref, version


def _cyclonedx(doc: Mapping[str, Any]) -> Iterator[_Found]:
    """(purl, bom-ref, name, Trivy properties) of every component."""
    meta = doc.get("metadata")
    found = list(walk_dicts(doc.get("components"), "components"))
    if isinstance(meta, Mapping) and isinstance(meta.get("component"), Mapping):
        found.append(meta["component"])
    for comp in found:
        purl = opt_str(comp, "purl")
        if purl:
            group, name = opt_str(comp, "group"), opt_str(comp, "name") or ""
            yield (
                purl,
                opt_str(comp, "bom-ref"),
                f"{group}/{name}" if group else name,
                _trivy_properties(comp),
            )


def _spdx(doc: Mapping[str, Any]) -> Iterator[_Found]:
    packages = doc.get("packages")
    for package in packages if isinstance(packages, list) else []:
        if not isinstance(package, Mapping):
            continue
        refs = package.get("externalRefs")
        for ref in refs if isinstance(refs, list) else []:
            if isinstance(ref, Mapping) and ref.get("referenceType") == "purl":
                purl = opt_str(ref, "referenceLocator")
                if purl:
                    yield purl, opt_str(package, "SPDXID"), opt_str(package, "name"), {}


def sbom_components(record: LedgerRecord) -> list[Component]:
    """The matchable components of one SBOM record, once each (by purl), in document order."""
    doc = json.loads(record.document)
    if not isinstance(doc, Mapping):
        return []
    cyclonedx = record.format is DocFormat.CYCLONEDX
    serial = opt_str(doc, "serialNumber") if cyclonedx else None
    meta = doc.get("metadata") if cyclonedx else None
    subject = opt_str(meta.get("component"), "purl") if isinstance(meta, Mapping) else None
    system = _operating_system(doc, cyclonedx)
    out: dict[str, Component] = {}
    for purl, bom_ref, name, props in _cyclonedx(doc) if cyclonedx else _spdx(doc):
        ref = parse_purl(purl, system)
        if ref is None or not ref.matchable or not ref.version or purl in out:
            continue
        ref, source_version = _with_source(ref, props)
        out[purl] = Component(
            record.upstream_id, record.digest, serial, subject, bom_ref, name or ref.name, ref, source_version
        )
    return list(out.values())
