"""SPDX 2.x JSON SBOMs.

``documentNamespace`` is SPDX's unique document URI, so it is the upstream id. Package
purls live in ``externalRefs``; many real SPDX documents have none, which is fine --
the document is still evidence, it just matches fewer selectors.
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
    req_str,
    sorted_unique,
)
from stella.errors import InputError
from stella.model import DocFormat, Kind, Linkset

__all__ = ["SpdxFormat"]


def _purls(package: Mapping[str, Any]) -> list[str]:
    refs = package.get("externalRefs")
    if not isinstance(refs, list):
        return []
    return [
        ref["referenceLocator"]
        for ref in refs
        if isinstance(ref, Mapping)
        and ref.get("referenceType") == "purl"
        and isinstance(ref.get("referenceLocator"), str)
    ]


class SpdxFormat:
    format = DocFormat.SPDX

    def matches(self, value: Any) -> bool:
        return isinstance(value, Mapping) and isinstance(value.get("spdxVersion"), str)

    def parse(self, value: Mapping[str, Any], *, digest: str) -> ParsedDocument:
        version = req_str(value, "spdxVersion", "SPDX document")
        if not version.startswith("SPDX-2."):
            raise InputError(f"SPDX document: spdxVersion {version!r} is not supported (SPDX 2.x JSON only)")
        namespace = req_str(value, "documentNamespace", "SPDX document")
        packages = value.get("packages", [])
        if not isinstance(packages, list):
            raise InputError("SPDX document: 'packages' must be a list")
        by_id: dict[str, Mapping[str, Any]] = {}
        purls: list[str] = []
        names: list[str | None] = []
        for package in packages:
            if not isinstance(package, Mapping):
                raise InputError("SPDX document: every packages[] entry must be an object")
            spdx_id = opt_str(package, "SPDXID")
            if spdx_id:
                by_id[spdx_id] = package
            purls.extend(_purls(package))
            names.append(opt_str(package, "name"))
        described = value.get("documentDescribes")
        subject = opt_str(value, "name")
        if isinstance(described, list) and described and isinstance(described[0], str):
            root = by_id.get(described[0])
            if root is not None:
                root_purls = _purls(root)
                root_name = opt_str(root, "name")
                root_version = opt_str(root, "versionInfo")
                if root_purls:
                    subject = root_purls[0]
                elif root_name:
                    subject = f"{root_name}@{root_version}" if root_version else root_name
        creation = value.get("creationInfo")
        modified, time_note = dated(
            (
                "creationInfo.created",
                normalize_time(opt_str(creation, "created"), field="creationInfo.created"),
            )
        )
        return ParsedDocument(
            kind=Kind.SBOM,
            format=DocFormat.SPDX,
            upstream_id=namespace,
            modified=modified,
            revision=None,
            time_note=time_note,
            linkset=Linkset(
                ecosystems=sorted_unique(ecosystem_of_purl(p) for p in purls),
                packages=sorted_unique(names),
                purls=sorted_unique(purls),
                sbom_subject=subject,
            ),
        )
