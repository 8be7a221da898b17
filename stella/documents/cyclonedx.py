"""CycloneDX JSON: SBOMs, and VEX documents (a BOM that carries ``vulnerabilities``).

CycloneDX uses one envelope for both, so the kind is decided by content: a BOM whose
``vulnerabilities`` list is non-empty is VEX evidence, otherwise it is an SBOM.
``serialNumber`` is optional in the spec; without it the subject component, and as a
last resort the content digest, names the document so re-ingestion stays idempotent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stella.documents.interface import (
    ParsedDocument,
    dated,
    ecosystem_of_purl,
    normalize_time,
    opt_str,
    sorted_unique,
    walk_dicts,
)
from stella.errors import InputError
from stella.model import DocFormat, Kind, Linkset

__all__ = ["CycloneDxFormat", "subject_of"]


def subject_of(component: Any) -> str | None:
    """How an SBOM names what it describes: purl, else name@version, else bom-ref."""
    if not isinstance(component, Mapping):
        return None
    purl = opt_str(component, "purl")
    if purl:
        return purl
    name = opt_str(component, "name")
    if name:
        version = opt_str(component, "version")
        group = opt_str(component, "group")
        full = f"{group}/{name}" if group else name
        return f"{full}@{version}" if version else full
    return opt_str(component, "bom-ref")


class CycloneDxFormat:
    format = DocFormat.CYCLONEDX

    def matches(self, value: Any) -> bool:
        return isinstance(value, Mapping) and value.get("bomFormat") == "CycloneDX"

    def parse(self, value: Mapping[str, Any], *, digest: str) -> ParsedDocument:
        spec = value.get("specVersion")
        if not isinstance(spec, str):
            raise InputError("CycloneDX document: 'specVersion' is missing or not a string")
        metadata = value.get("metadata") if isinstance(value.get("metadata"), Mapping) else {}
        assert isinstance(metadata, Mapping)
        subject = subject_of(metadata.get("component"))
        components = value.get("components", [])
        if not isinstance(components, list):
            raise InputError("CycloneDX document: 'components' must be a list")
        vulnerabilities = value.get("vulnerabilities", [])
        if not isinstance(vulnerabilities, list):
            raise InputError("CycloneDX document: 'vulnerabilities' must be a list")
        is_vex = bool(vulnerabilities)
        purls = [opt_str(c, "purl") for c in walk_dicts(components, "components")]
        names = [opt_str(c, "name") for c in walk_dicts(components, "components")]
        aliases: list[str | None] = []
        products: list[str | None] = []
        for vuln in vulnerabilities:
            if not isinstance(vuln, Mapping):
                raise InputError("CycloneDX document: every vulnerabilities[] entry must be an object")
            aliases.append(opt_str(vuln, "id"))
            references = vuln.get("references")
            aliases.extend(opt_str(ref, "id") for ref in (references if isinstance(references, list) else []))
            affects = vuln.get("affects")
            products.extend(
                opt_str(affect, "ref") for affect in (affects if isinstance(affects, list) else [])
            )
        serial = opt_str(value, "serialNumber")
        upstream_id = serial or subject or f"cyclonedx:{digest}"
        version = value.get("version")
        kind_label = "CycloneDX VEX" if is_vex else "CycloneDX SBOM"
        modified, time_note = dated(
            (
                "metadata.timestamp",
                normalize_time(opt_str(metadata, "timestamp"), field=f"{kind_label} metadata.timestamp"),
            )
        )
        return ParsedDocument(
            kind=Kind.VEX if is_vex else Kind.SBOM,
            format=DocFormat.CYCLONEDX_VEX if is_vex else DocFormat.CYCLONEDX,
            upstream_id=upstream_id,
            modified=modified,
            revision=str(version) if isinstance(version, int) and not isinstance(version, bool) else None,
            time_note=time_note,
            linkset=Linkset(
                ecosystems=sorted_unique(ecosystem_of_purl(p) for p in purls + products if p),
                packages=sorted_unique(names),
                purls=sorted_unique(purls),
                aliases=sorted_unique(aliases),
                vex_products=sorted_unique(products),
                sbom_subject=None if is_vex else subject,
            ),
        )
