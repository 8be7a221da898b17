"""OpenVEX documents.

The ``@context`` URI is the format's own marker. ``@id`` is not unique in practice (two
real scanner-generated documents in our data share one), which is fine: the ledger
keys records by digest and keeps both.
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

__all__ = ["OpenVexFormat"]


def _product_ids(product: Any) -> list[str]:
    if isinstance(product, str):
        return [product]
    if not isinstance(product, Mapping):
        return []
    ids = [p for p in (opt_str(product, "@id"),) if p]
    identifiers = product.get("identifiers")
    if isinstance(identifiers, Mapping):
        ids.extend(v for v in identifiers.values() if isinstance(v, str))
    subs = product.get("subcomponents")
    if isinstance(subs, list):
        for sub in subs:
            ids.extend(_product_ids(sub))
    return ids


class OpenVexFormat:
    format = DocFormat.OPENVEX

    def matches(self, value: Any) -> bool:
        if not isinstance(value, Mapping):
            return False
        context = value.get("@context")
        return isinstance(context, str) and context.startswith("https://openvex.dev/ns")

    def parse(self, value: Mapping[str, Any], *, digest: str) -> ParsedDocument:
        doc_id = req_str(value, "@id", "OpenVEX document")
        statements = value.get("statements")
        if not isinstance(statements, list):
            raise InputError(f"OpenVEX {doc_id}: 'statements' is missing or not a list")
        aliases: list[str | None] = []
        products: list[str] = []
        for index, statement in enumerate(statements):
            if not isinstance(statement, Mapping):
                raise InputError(f"OpenVEX {doc_id}: statements[{index}] must be an object")
            vuln = statement.get("vulnerability")
            if isinstance(vuln, str):
                aliases.append(vuln)
            elif isinstance(vuln, Mapping):
                aliases.extend([opt_str(vuln, "name"), opt_str(vuln, "@id")])
                more = vuln.get("aliases")
                if isinstance(more, list):
                    aliases.extend(a for a in more if isinstance(a, str))
            for product in (
                statement.get("products", []) if isinstance(statement.get("products"), list) else []
            ):
                products.extend(_product_ids(product))
        modified = opt_str(value, "last_updated") or opt_str(value, "timestamp")
        version = value.get("version")
        purls = [p for p in products if p.startswith("pkg:")]
        dated_modified, time_note = dated(
            ("last_updated/timestamp", normalize_time(modified, field="last_updated/timestamp"))
        )
        return ParsedDocument(
            kind=Kind.VEX,
            format=DocFormat.OPENVEX,
            upstream_id=doc_id,
            modified=dated_modified,
            time_note=time_note,
            revision=str(version)
            if isinstance(version, int | str) and not isinstance(version, bool)
            else None,
            linkset=Linkset(
                ecosystems=sorted_unique(ecosystem_of_purl(p) for p in purls),
                purls=sorted_unique(purls),
                aliases=sorted_unique(aliases),
                vex_products=sorted_unique(products),
            ),
        )
