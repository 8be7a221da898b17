"""VEX statements from OpenVEX, CycloneDX VEX and CSAF, matched to components and resolved.

Each format names products its own way; all become :class:`Statement` objects with
products as purls (with or without version and qualifiers) or CycloneDX BOM-Links
(``urn:cdx:<serial>/<version>#<bom-ref>``). A purl product matches a component of the
same package when its version, if given, is the installed one and its qualifiers, if
any, are all on the component's purl. OpenVEX subcomponents name the component inside a
product: the product must then be the SBOM's own subject.

Resolution (the Aggregation-Only Contract: state, don't merge): every statement that
applies is kept on the finding; the latest by timestamp (ties: document digest, then
position) is the effective one, and statements with a different status are recorded as
conflicts rather than silently dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from packageurl import PackageURL

from stella.documents.interface import normalize_time, opt_str, walk_dicts
from stella.errors import InputError
from stella.findings.components import Component
from stella.findings.purls import PackageRef, parse_purl
from stella.model import DocFormat, Kind, LedgerRecord

__all__ = ["Product", "Resolution", "Statement", "applies", "is_vex_record", "resolve", "vex_statements"]

_CDX_STATE = {
    "not_affected": "not_affected",
    "false_positive": "not_affected",
    "resolved": "fixed",
    "resolved_with_pedigree": "fixed",
    "exploitable": "affected",
    "in_triage": "under_investigation",
}
_CDX_JUSTIFICATION = {
    "code_not_present": "vulnerable_code_not_present",
    "code_not_reachable": "vulnerable_code_not_in_execute_path",
    "requires_configuration": "vulnerable_code_cannot_be_controlled_by_adversary",
    "requires_dependency": "component_not_present",
    "requires_environment": "vulnerable_code_cannot_be_controlled_by_adversary",
    "protected_by_compiler": "inline_mitigations_already_exist",
    "protected_at_runtime": "inline_mitigations_already_exist",
    "protected_at_perimeter": "inline_mitigations_already_exist",
    "protected_by_mitigating_control": "inline_mitigations_already_exist",
}
_CSAF_STATUS = {
    "known_not_affected": "not_affected",
    "fixed": "fixed",
    "first_fixed": "fixed",
    "known_affected": "affected",
    "first_affected": "affected",
    "last_affected": "affected",
    "under_investigation": "under_investigation",
}
_OPENVEX_STATUS = frozenset({"not_affected", "affected", "fixed", "under_investigation"})


@dataclass(frozen=True, slots=True)
class Product:
    raw: str
    ref: PackageRef | None = None
    bom_link: tuple[str, str] | None = None  # (serial number, bom-ref)
    subcomponents: tuple[PackageRef, ...] = ()


@dataclass(frozen=True, slots=True)
class Statement:
    document: str  # the VEX record's upstream id
    digest: str
    format: str
    index: int
    vulnerability: str
    aliases: tuple[str, ...]
    products: tuple[Product, ...]
    status: str
    justification: str | None
    timestamp: str | None

    @property
    def ids(self) -> tuple[str, ...]:
        return (self.vulnerability, *self.aliases)

    @property
    def order(self) -> tuple[str, str, int]:
        return (self.timestamp or "", self.digest, self.index)

    def to_json(self) -> dict[str, Any]:
        return {
            "document": self.document,
            "digest": self.digest,
            "format": self.format,
            "statement": self.index,
            "vulnerability": self.vulnerability,
            "status": self.status,
            "justification": self.justification,
            "timestamp": self.timestamp,
        }


def is_vex_record(record: LedgerRecord) -> bool:
    return record.kind is Kind.VEX


def _time(value: Any) -> str | None:
    try:
        return normalize_time(value, field="timestamp") if isinstance(value, str) else None
    except InputError:
        return None


def _product(raw: str, subs: Iterable[str] = ()) -> Product:
    if raw.startswith("urn:cdx:"):
        body, _, bom_ref = raw[len("urn:cdx:") :].partition("#")
        serial = "urn:uuid:" + body.split("/", 1)[0]
        return Product(raw, bom_link=(serial, bom_ref) if bom_ref else None)
    refs = tuple(r for r in (parse_purl(s) for s in subs) if r is not None)
    return Product(raw, ref=parse_purl(raw), subcomponents=refs)


# --- OpenVEX ---------------------------------------------------------------------------------


def _openvex_ids(product: Any) -> list[str]:
    if isinstance(product, str):
        return [product]
    if not isinstance(product, Mapping):
        return []
    ids = [i for i in (opt_str(product, "@id"),) if i]
    identifiers = product.get("identifiers")
    if isinstance(identifiers, Mapping) and isinstance(identifiers.get("purl"), str):
        ids.append(identifiers["purl"])
    return ids


def _openvex(doc: Mapping[str, Any], record: LedgerRecord) -> Iterator[Statement]:
    default_time = _time(doc.get("timestamp"))
    for index, stmt in enumerate(doc.get("statements") or []):
        if not isinstance(stmt, Mapping) or stmt.get("status") not in _OPENVEX_STATUS:
            continue
        vuln = stmt.get("vulnerability")
        if isinstance(vuln, str):
            name, aliases = vuln, []
        elif isinstance(vuln, Mapping):
            name = opt_str(vuln, "name") or opt_str(vuln, "@id") or ""
            aliases = [a for a in vuln.get("aliases") or [] if isinstance(a, str)]
        else:
            continue
        if not name:
            continue
        shared_subs = [s for sub in stmt.get("subcomponents") or [] for s in _openvex_ids(sub)]
        products: list[Product] = []
        for product in stmt.get("products") or []:
            subs = list(shared_subs)
            if isinstance(product, Mapping):
                subs += [s for sub in product.get("subcomponents") or [] for s in _openvex_ids(sub)]
            products.extend(_product(raw, subs) for raw in _openvex_ids(product))
        yield Statement(
            record.upstream_id, record.digest, record.format.value, index, name, tuple(aliases),
            tuple(products), str(stmt["status"]), opt_str(stmt, "justification"),
            _time(stmt.get("timestamp")) or _time(stmt.get("last_updated")) or default_time,
        )  # fmt: skip


# --- CycloneDX VEX -----------------------------------------------------------------------------


def _cyclonedx(doc: Mapping[str, Any], record: LedgerRecord) -> Iterator[Statement]:
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    local = {
        opt_str(c, "bom-ref"): opt_str(c, "purl") for c in walk_dicts(doc.get("components"), "components")
    }
    for index, vuln in enumerate(doc.get("vulnerabilities") or []):
        if not isinstance(vuln, Mapping) or not opt_str(vuln, "id"):
            continue
        analysis = vuln.get("analysis") if isinstance(vuln.get("analysis"), Mapping) else {}
        assert isinstance(analysis, Mapping)
        status = _CDX_STATE.get(str(analysis.get("state")))
        if status is None:
            continue
        products: list[Product] = []
        for affect in vuln.get("affects") or []:
            ref = opt_str(affect, "ref")
            if ref:
                products.append(_product(local.get(ref) or ref))
        refs = [opt_str(r, "id") for r in vuln.get("references") or []]
        justification = analysis.get("justification")
        stamp = next(
            (
                t
                for t in (
                    _time(analysis.get("lastUpdated")),
                    _time(analysis.get("firstIssued")),
                    _time(vuln.get("updated")),
                    _time(vuln.get("published")),
                    _time(meta.get("timestamp")),
                )
                if t
            ),
            None,
        )
        yield Statement(
            record.upstream_id, record.digest, record.format.value, index, str(vuln["id"]),
            tuple(r for r in refs if r), tuple(products), status,
            _CDX_JUSTIFICATION.get(str(justification)) if justification else None, stamp,
        )  # fmt: skip


# --- CSAF ------------------------------------------------------------------------------------


def _csaf_products(tree: Any) -> dict[str, str]:
    """product_id -> purl, relationships resolved to the component they are made of."""
    if not isinstance(tree, Mapping):
        return {}
    purls: dict[str, str] = {}
    nodes = [n.get("product") for n in walk_dicts(tree.get("branches"), "branches") if isinstance(n, Mapping)]
    nodes += list(tree.get("full_product_names") or [])
    for node in nodes:
        if not isinstance(node, Mapping):
            continue
        helper = node.get("product_identification_helper")
        purl = opt_str(helper, "purl")
        pid = opt_str(node, "product_id")
        if pid and purl:
            purls[pid] = purl
    for rel in tree.get("relationships") or []:
        if not isinstance(rel, Mapping):
            continue
        full = rel.get("full_product_name")
        pid = opt_str(full, "product_id")
        component = purls.get(opt_str(rel, "product_reference") or "")
        if pid and component and pid not in purls:
            purls[pid] = component
    return purls


def _csaf(doc: Mapping[str, Any], record: LedgerRecord) -> Iterator[Statement]:
    tracking = (
        (doc.get("document") or {}).get("tracking") if isinstance(doc.get("document"), Mapping) else None
    )
    stamp = _time(tracking.get("current_release_date")) if isinstance(tracking, Mapping) else None
    purls = _csaf_products(doc.get("product_tree"))
    index = 0
    for vuln in doc.get("vulnerabilities") or []:
        if not isinstance(vuln, Mapping):
            continue
        ids = [opt_str(vuln, "cve")] + [opt_str(i, "text") for i in vuln.get("ids") or []]
        names = [i for i in ids if i]
        if not names:
            continue
        justification: dict[str, str] = {}
        for flag in vuln.get("flags") or []:
            if isinstance(flag, Mapping) and isinstance(flag.get("label"), str):
                for pid in flag.get("product_ids") or []:
                    justification[str(pid)] = flag["label"]
        status = vuln.get("product_status") if isinstance(vuln.get("product_status"), Mapping) else {}
        assert isinstance(status, Mapping)
        for category, pids in sorted(status.items()):
            mapped = _CSAF_STATUS.get(category)
            if mapped is None or not isinstance(pids, list):
                continue
            for pid in pids:
                purl = purls.get(str(pid))
                if purl is None:
                    continue
                yield Statement(
                    record.upstream_id, record.digest, record.format.value, index, names[0],
                    tuple(names[1:]), (_product(purl),), mapped, justification.get(str(pid)), stamp,
                )  # fmt: skip
                index += 1


_READERS = {DocFormat.OPENVEX: _openvex, DocFormat.CYCLONEDX_VEX: _cyclonedx, DocFormat.CSAF: _csaf}


def vex_statements(record: LedgerRecord) -> list[Statement]:
    """Every statement of one VEX record that names a product and a known status."""
    reader = _READERS.get(record.format)
    doc = json.loads(record.document)
    if reader is None or not isinstance(doc, Mapping):
        return []
    return [s for s in reader(doc, record) if s.products]


# --- matching and resolution -------------------------------------------------------------------


def _purl_matches(product: PackageRef, ref: PackageRef) -> bool:
    if product.identity != ref.identity:
        return False
    if product.version is not None and product.version != ref.version:
        return False
    return set(product.qualifiers) <= set(ref.qualifiers)


def applies(statement: Statement, component: Component, vulnerability: str) -> bool:
    """Does ``statement`` speak about ``vulnerability`` in ``component``?"""
    if vulnerability not in statement.ids:
        return False
    for product in statement.products:
        if product.bom_link is not None:
            if product.bom_link == (component.serial, component.bom_ref):
                return True
            continue
        if product.subcomponents:
            # The product is what the SBOM describes (often an OCI image or an application,
            # not a package we match), the subcomponent is the component.
            if (
                component.subject is not None
                and _same_artifact(product.raw, component.subject)
                and any(_purl_matches(sub, component.ref) for sub in product.subcomponents)
            ):
                return True
            continue
        if product.ref is not None and _purl_matches(product.ref, component.ref):
            return True
    return False


def _same_artifact(product: str, subject: str) -> bool:
    """Purl equality for any purl type: type, namespace, name; version and qualifiers if the product gives them."""
    try:
        want, have = PackageURL.from_string(product), PackageURL.from_string(subject)
    except ValueError:
        return product == subject
    if (want.type, want.namespace, want.name) != (have.type, have.namespace, have.name):
        return False
    if want.version is not None and want.version != have.version:
        return False
    wanted = want.qualifiers if isinstance(want.qualifiers, dict) else {}
    held = have.qualifiers if isinstance(have.qualifiers, dict) else {}
    return all(held.get(k) == v for k, v in wanted.items())


@dataclass(frozen=True, slots=True)
class Resolution:
    statements: tuple[Statement, ...]  # every applying statement, oldest first
    effective: Statement | None
    conflicts: tuple[Statement, ...]  # applying statements whose status differs from the effective one

    @property
    def status(self) -> str:
        """No statement: the finding stands as the advisory states it (affected)."""
        return self.effective.status if self.effective else "affected"


def resolve(statements: Iterable[Statement]) -> Resolution:
    ordered = tuple(sorted(set(statements), key=lambda s: s.order))
    if not ordered:
        return Resolution((), None, ())
    latest = ordered[-1]
    return Resolution(ordered, latest, tuple(s for s in ordered if s.status != latest.status))
