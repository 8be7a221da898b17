"""OSV advisories (including GHSA records published in OSV form).

Recognised by the OSV core fields (``id`` + ``modified``) and the absence of other
formats' markers. ``modified`` is required by the OSV schema and is what revisions are
told apart by, so a record without a valid one is rejected rather than guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stella.documents.interface import ParsedDocument, dated, normalize_time, req_str, sorted_unique
from stella.errors import InputError
from stella.model import DocFormat, Kind, Linkset

__all__ = ["OsvFormat"]

_OSV_MARKERS = ("affected", "aliases", "summary", "details", "schema_version", "withdrawn", "related")


class OsvFormat:
    format = DocFormat.OSV

    def matches(self, value: Any) -> bool:
        return (
            isinstance(value, Mapping)
            and "id" in value
            and "modified" in value
            and "bomFormat" not in value
            and "document" not in value
            and any(marker in value for marker in _OSV_MARKERS)
        )

    def parse(self, value: Mapping[str, Any], *, digest: str) -> ParsedDocument:
        upstream_id = req_str(value, "id", "OSV record")
        published = value.get("published")
        modified, time_note = dated(
            ("modified", normalize_time(req_str(value, "modified", f"OSV {upstream_id}"), field="modified")),
            (
                "published",
                normalize_time(published, field="published") if isinstance(published, str) else None,
            ),
        )
        affected = value.get("affected", [])
        if not isinstance(affected, list):
            raise InputError(f"OSV {upstream_id}: 'affected' must be a list")
        ecosystems: list[str | None] = []
        packages: list[str | None] = []
        purls: list[str | None] = []
        for index, entry in enumerate(affected):
            if not isinstance(entry, Mapping):
                raise InputError(f"OSV {upstream_id}: affected[{index}] must be an object")
            package = entry.get("package")
            if package is None:
                continue  # GIT-only records (PSF, some OSS-Fuzz) name no package
            if not isinstance(package, Mapping):
                raise InputError(f"OSV {upstream_id}: affected[{index}].package must be an object")
            ecosystem = package.get("ecosystem")
            if isinstance(ecosystem, str):
                # "Debian:12" / "Alpine:v3.18": selectors match on the ecosystem family.
                ecosystems.append(ecosystem.split(":", 1)[0])
            name = package.get("name")
            packages.append(name if isinstance(name, str) else None)
            purl = package.get("purl")
            purls.append(purl if isinstance(purl, str) else None)
        aliases = value.get("aliases", [])
        if not isinstance(aliases, list):
            raise InputError(f"OSV {upstream_id}: 'aliases' must be a list")
        withdrawn = value.get("withdrawn")
        return ParsedDocument(
            kind=Kind.ADVISORY,
            format=DocFormat.OSV,
            upstream_id=upstream_id,
            modified=modified,
            revision=None,
            time_note=time_note,
            linkset=Linkset(
                ecosystems=sorted_unique(ecosystems),
                packages=sorted_unique(packages),
                purls=sorted_unique(purls),
                aliases=sorted_unique(a for a in aliases if isinstance(a, str)),
                withdrawn=normalize_time(withdrawn, field="withdrawn")
                if isinstance(withdrawn, str)
                else None,
            ),
        )
