"""CSAF 2.0 documents: ``csaf_vex`` is VEX evidence, ``csaf_security_advisory`` an advisory.

Other CSAF profiles (``csaf_base``, informational advisories) carry no product status
we could use and are rejected with a reason naming the category, instead of being
stored as evidence of something they are not.
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
    walk_dicts,
)
from stella.errors import InputError
from stella.model import DocFormat, Kind, Linkset

__all__ = ["CsafFormat"]

_KINDS = {"csaf_vex": Kind.VEX, "csaf_security_advisory": Kind.ADVISORY}


def _helper_purls(node: Mapping[str, Any]) -> list[str]:
    product = node.get("product")
    helper = product.get("product_identification_helper") if isinstance(product, Mapping) else None
    if not isinstance(helper, Mapping):
        return []
    purls = [p for p in (opt_str(helper, "purl"),) if p]
    more = helper.get("purls")
    if isinstance(more, list):
        purls.extend(p for p in more if isinstance(p, str))
    return purls


class CsafFormat:
    format = DocFormat.CSAF

    def matches(self, value: Any) -> bool:
        return (
            isinstance(value, Mapping)
            and isinstance(value.get("document"), Mapping)
            and "csaf_version" in value["document"]
        )

    def parse(self, value: Mapping[str, Any], *, digest: str) -> ParsedDocument:
        document = value["document"]
        category = req_str(document, "category", "CSAF document")
        kind = _KINDS.get(category)
        if kind is None:
            raise InputError(
                f"CSAF document: category {category!r} is not supported "
                f"(accepted: {', '.join(sorted(_KINDS))})"
            )
        tracking = document.get("tracking")
        if not isinstance(tracking, Mapping):
            raise InputError("CSAF document: 'document.tracking' is missing")
        tracking_id = req_str(tracking, "id", "CSAF document.tracking")
        initial = opt_str(tracking, "initial_release_date")
        modified, time_note = dated(
            (
                "tracking.current_release_date",
                normalize_time(
                    req_str(tracking, "current_release_date", f"CSAF {tracking_id} tracking"),
                    field="tracking.current_release_date",
                ),
            ),
            ("tracking.initial_release_date", normalize_time(initial, field="tracking.initial_release_date")),
        )
        tree = value.get("product_tree")
        purls: list[str] = []
        names: list[str | None] = []
        if isinstance(tree, Mapping):
            for node in walk_dicts(tree.get("branches", []), "branches"):
                purls.extend(_helper_purls(node))
                if node.get("category") == "product_name":
                    names.append(opt_str(node, "name"))
            for node in (
                tree.get("full_product_names", []) if isinstance(tree.get("full_product_names"), list) else []
            ):
                if isinstance(node, Mapping):
                    purls.extend(_helper_purls({"product": node}))
        aliases: list[str | None] = []
        vulnerabilities = value.get("vulnerabilities", [])
        if not isinstance(vulnerabilities, list):
            raise InputError(f"CSAF {tracking_id}: 'vulnerabilities' must be a list")
        for vuln in vulnerabilities:
            if isinstance(vuln, Mapping):
                aliases.append(opt_str(vuln, "cve"))
                ids = vuln.get("ids")
                if isinstance(ids, list):
                    aliases.extend(opt_str(i, "text") for i in ids)
        return ParsedDocument(
            kind=kind,
            format=DocFormat.CSAF,
            upstream_id=tracking_id,
            modified=modified,
            revision=opt_str(tracking, "version"),
            time_note=time_note,
            linkset=Linkset(
                ecosystems=sorted_unique(ecosystem_of_purl(p) for p in purls),
                packages=sorted_unique(names),
                purls=sorted_unique(purls),
                aliases=sorted_unique(aliases),
                vex_products=sorted_unique(purls) if kind is Kind.VEX else (),
            ),
        )
