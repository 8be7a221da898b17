"""OSV (and GHSA-in-OSV) advisories reshaped into Trivy schema-2 DB entries.

A pure function per record: no clock, no I/O, no cross-record state, so it runs the same
inside a Beam DoFn on any worker and its output depends only on the record. Everything
written is taken from the advisory itself (the Aggregation-Only Contract forbids
deriving severities), and everything the DB cannot express is returned as an
:class:`Untranslated` with a stable reason slug, never dropped silently: an export's
provenance can then count what a Trivy consumer will not see.

Entry identities (what the lead merges when two records emit the same one):

* ``(("data-source",), <bucket name>)`` -- identical for every record of one feed;
* ``(("vulnerability",), <vuln id>)`` -- details of one vulnerability; several records
  (a PYSEC and a GHSA record aliasing the same CVE) may emit it;
* ``((<bucket>, <package key>), <vuln id>)`` -- one Advisory; two records of one feed
  aliasing one CVE may emit it. :func:`merge_value` merges either kind deterministically.

Vulnerability ids follow Trivy's own OSV importer: the CVE ids among the record id and
its aliases key the advisory (one advisory per CVE), and the other ids (GHSA, PYSEC, GO,
…) become ``VendorIDs``; a record without a CVE alias is keyed by its own id. That is
why a PYSEC record is reported by Trivy under its CVE.

A ``withdrawn`` record is excluded whatever its timestamp: judging "withdrawn in the
future" would need a clock, and no feed we read post-dates withdrawals.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from stella.adapters.trivy.ecosystems import DataSource, Placement, Unplaceable, place
from stella.adapters.trivy.versions import (
    Interval,
    IntervalSet,
    VersionProblem,
    exact_constraint,
    render_interval,
    translate_ranges,
    version_renderer,
)
from stella.canonical import JSONValue, dumps

__all__ = [
    "AdapterOutput",
    "RawEntry",
    "AffectedPackage",
    "affected_packages",
    "load_json",
    "vulnerability_ids",
    "TrivyEntry",
    "Untranslated",
    "merge_value",
    "translate_entries",
    "translate_osv",
]

# bbolt rejects keys above 32 KiB (research A.13); an untrusted name that long is hostile.
MAX_KEY_BYTES = 32_768
# Trivy's Status enum (B.4): 2 = affected.
_STATUS_AFFECTED = 2
# Severity words the feeds use (GHSA: LOW/MODERATE/HIGH/CRITICAL; Bitnami: Low..Critical).
_SEVERITY = {"LOW": 1, "MODERATE": 2, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}
_CVSS_FIELD = {"CVSS_V2": "V2Vector", "CVSS_V3": "V3Vector", "CVSS_V4": "V40Vector"}
# Go's time.Time accepts RFC 3339 only; anything else makes Trivy drop the whole record.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})")


RawEntry = tuple[tuple[str, ...], str, Any]
"""(bucket path, key, JSON value) of one DB entry, as :func:`translate_entries` returns them."""


@dataclass(frozen=True, slots=True)
class TrivyEntry:
    """One key/value of the DB: ``bucket`` is the nested bucket path, ``key`` the key in it."""

    bucket: tuple[str, ...]
    key: str
    value: JSONValue


@dataclass(frozen=True, slots=True)
class Untranslated:
    """Part of a record the DB cannot carry: ``reason`` is a stable slug for counting."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class AdapterOutput:
    entries: tuple[TrivyEntry, ...]
    untranslated: tuple[Untranslated, ...]


@dataclass(slots=True)
class AffectedPackage:
    """Everything the affected entries of one record say about one (bucket, package)."""

    placement: Placement
    intervals: list[Interval] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    listed: list[str] = field(default_factory=list)
    where: list[str] = field(default_factory=list)


def _uniq(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _string_list(value: Any) -> list[str] | None:
    if value is None:
        return []
    if not isinstance(value, list):
        return None
    # Element types as a set, in C: a per-element isinstance cost more than the rest of a
    # record's version list; str subclasses (never from a parser) take the exact test.
    if not _STR_ONLY.issuperset(map(type, value)) and not all(isinstance(v, str) for v in value):
        return None
    return list(value)


_STR_ONLY = frozenset({str})


def vulnerability_ids(record_id: str, aliases: list[str]) -> tuple[list[str], list[str]]:
    """(ids a finding is reported under: the CVE aliases, else the record id; the other ids)."""
    everything = _uniq([record_id, *aliases])
    cves = [i for i in everything if i.startswith("CVE-")]
    if not cves:
        return [record_id], [a for a in _uniq(aliases) if a != record_id]
    return cves, [i for i in everything if not i.startswith("CVE-")]


def affected_packages(
    affected: list[Any], record_id: str
) -> tuple[dict[tuple[str, str], AffectedPackage], list[VersionProblem]]:
    """What an OSV record's ``affected`` list says, per (bucket, package key), and what it could not.

    Shared by the Trivy DB and the findings matcher: both read the same ranges, the same
    way, so a finding in json:policy and a Trivy match come from one reading of OSV.
    """
    packages: dict[tuple[str, str], AffectedPackage] = {}
    problems: list[VersionProblem] = []
    for index, item in enumerate(affected):
        problems.extend(_read_affected(item, index, record_id, packages))
    return packages, problems


def translate_osv(document: Mapping[str, Any], *, upstream_id: str) -> AdapterOutput:
    """Trivy entries for one OSV record, plus what could not be translated and why.

    Every input yields at least one entry or at least one :class:`Untranslated`.
    """
    entries, problems = translate_entries(document, upstream_id=upstream_id)
    # One value object per entry: callers may merge values in place.
    return AdapterOutput(tuple(TrivyEntry(b, k, _copy(v)) for b, k, v in entries), problems)


def translate_entries(
    document: Mapping[str, Any], *, upstream_id: str
) -> tuple[list[RawEntry], tuple[Untranslated, ...]]:
    """:func:`translate_osv` as plain ``(bucket, key, value)`` tuples, for callers that only encode them.

    Entries of one record may share a value object (every vulnerability id of one
    package, say), so their JSON is encoded once; the values must not be changed.
    """
    problems: list[Untranslated] = []

    def bad(detail: str, reason: str = "malformed") -> tuple[list[RawEntry], tuple[Untranslated, ...]]:
        return [], (*problems, Untranslated(reason, f"{upstream_id}: {detail}"))

    if type(document) is not dict and not isinstance(cast(object, document), Mapping):  # untrusted
        return bad("document is not a JSON object")
    record_id = document.get("id")
    if not isinstance(record_id, str) or not record_id or len(record_id.encode()) > MAX_KEY_BYTES:
        return bad(f"id {record_id!r} is not a usable string")
    if document.get("withdrawn") is not None:
        return bad(f"withdrawn at {document.get('withdrawn')!r}", "withdrawn")
    aliases = _string_list(document.get("aliases"))
    if aliases is None:
        return bad("aliases is not a list of strings")
    affected = document.get("affected")
    if affected is None or affected == []:
        return bad("no affected packages", "no-affected-package")
    if not isinstance(affected, list):
        return bad("affected is not a list")

    packages, found = affected_packages(affected, record_id)
    if found:
        problems.extend(Untranslated(p.reason, f"{upstream_id}: {p.detail}") for p in found)

    vuln_ids, vendor_ids = vulnerability_ids(record_id, aliases)
    if any(len(v.encode()) > MAX_KEY_BYTES for v in vuln_ids):
        return bad(f"an alias is longer than {MAX_KEY_BYTES} bytes")
    entries: list[RawEntry] = []
    sources: dict[str, DataSource] = {}
    for (bucket, package), pkg in sorted(packages.items()):
        value = _os_advisory(pkg) if pkg.placement.is_os else _language_advisory(pkg)
        if isinstance(value, VersionProblem):
            problems.append(Untranslated(value.reason, f"{upstream_id}: {value.detail}"))
            continue
        if vendor_ids:
            value["VendorIDs"] = vendor_ids
        path = (bucket, package)
        entries.extend((path, v, value) for v in vuln_ids)
        sources[bucket] = pkg.placement.source
    if entries:
        detail, detail_problems = _vulnerability(
            document, record_id, sorted({s.id for s in sources.values()})
        )
        if detail_problems:
            problems.extend(Untranslated(r, f"{upstream_id}: {d}") for r, d in detail_problems)
        entries.extend((_VULNERABILITY, v, detail) for v in vuln_ids)
        entries.extend((_DATA_SOURCE, b, _source_json(s)) for b, s in sorted(sources.items()))
    if not entries and not problems:  # cannot happen by construction; keep the contract anyway
        problems.append(Untranslated("no-affected-versions", f"{upstream_id}: nothing to translate"))
    return entries, tuple(problems)


_VULNERABILITY = ("vulnerability",)
_DATA_SOURCE = ("data-source",)


@functools.lru_cache(maxsize=256)
def _source_json(source: DataSource) -> dict[str, str]:
    """One value object per data source (a handful exist): shared by every entry naming it."""
    return source.to_json()


def _copy(value: dict[str, Any]) -> dict[str, Any]:
    return {
        k: list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v for k, v in value.items()
    }


def _read_affected(
    item: Any, index: int, record_id: str, packages: dict[tuple[str, str], AffectedPackage]
) -> list[VersionProblem]:
    where = f"affected[{index}]"
    if type(item) is not dict and not isinstance(item, Mapping):
        return [VersionProblem("malformed", f"{where} is not an object")]
    ranges = item.get("ranges", [])
    versions = _string_list(item.get("versions"))
    if not isinstance(ranges, list) or versions is None:
        return [VersionProblem("malformed", f"{where}: ranges/versions are not lists")]
    package = item.get("package")
    if package is None:
        only_git = bool(ranges) and all(isinstance(r, Mapping) and r.get("type") == "GIT" for r in ranges)
        if only_git and not versions:
            return [VersionProblem("git-only-range", f"{where}: no package, only GIT ranges")]
        return [VersionProblem("no-affected-package", f"{where} names no package")]
    if type(package) is not dict and not isinstance(package, Mapping):
        return [VersionProblem("malformed", f"{where}: package is not an object")]
    ecosystem, name = package.get("ecosystem"), package.get("name")
    if not isinstance(ecosystem, str) or not isinstance(name, str):
        return [VersionProblem("malformed", f"{where}: package ecosystem/name are not strings")]
    placement = place(ecosystem, name, record_id=record_id)
    if isinstance(placement, Unplaceable):
        return [VersionProblem(placement.reason, f"{where}: {placement.detail}")]
    if len(placement.package.encode()) > MAX_KEY_BYTES:
        return [VersionProblem("malformed", f"{where}: package name longer than {MAX_KEY_BYTES} bytes")]
    where = f"{where} {ecosystem}/{name}"

    result = translate_ranges(placement.scheme, ranges, where)
    problems = list(result.problems)
    listed: list[Any] = list(map(version_renderer(placement.scheme), versions))
    if not _STR_ONLY.issuperset(map(type, listed)):  # some version Trivy cannot parse
        rendered, listed = listed, []
        for version in rendered:
            if isinstance(version, str):
                listed.append(version)
            else:
                problems.append(VersionProblem(version.reason, f"{where} versions: {version.detail}"))
    if not result.intervals and not listed:
        if result.git_ranges and not problems:
            problems.append(VersionProblem("git-only-range", f"{where}: only GIT ranges, no versions"))
        elif not problems:
            problems.append(VersionProblem("no-affected-versions", f"{where}: neither ranges nor versions"))
        return problems
    pkg = packages.get((placement.bucket, placement.package))
    if pkg is None:
        pkg = packages[placement.bucket, placement.package] = AffectedPackage(placement)
    pkg.intervals.extend(result.intervals)
    pkg.fixed.extend(result.fixed)
    pkg.listed.extend(listed)
    pkg.where.append(where)
    return problems


def _language_advisory(pkg: AffectedPackage) -> dict[str, Any] | VersionProblem:
    scheme = pkg.placement.scheme
    ranges = IntervalSet(scheme, pkg.intervals)
    vulnerable = [render_interval(scheme, i) for i in pkg.intervals]
    listed = _uniq(pkg.listed)
    vulnerable += [
        exact_constraint(scheme, v)
        for v, covered in zip(listed, ranges.covering(listed), strict=True)
        if covered is not True
    ]
    # A fixed version is written as "secure" only when no other range or listed
    # version of the same package still covers it: Trivy lets PatchedVersions win.
    bounds = {b for i in pkg.intervals for b in (i.lower, i.upper) if b is not None}
    patched = [
        f
        for f in _uniq(pkg.fixed)
        if f not in pkg.listed
        and (ranges.covers(f) is False or (ranges.covers(f) is None and f not in bounds))
    ]
    value: dict[str, Any] = {"VulnerableVersions": _uniq(vulnerable)}
    if patched:
        value["PatchedVersions"] = patched
    return value


def _os_advisory(pkg: AffectedPackage) -> dict[str, Any] | VersionProblem:
    # An OS advisory holds one FixedVersion compared as "installed < fixed" (B.6), so only
    # "every version before X" (or "every version", unfixed) is expressible. Listed
    # versions beside such a range are taken as its enumeration (distro versions can't
    # be ordered here); listed versions alone are not expressible.
    where = "; ".join(pkg.where)
    intervals = _uniq_intervals(pkg.intervals)
    if len(intervals) != 1:
        return VersionProblem("os-range-unrepresentable", f"{where}: {len(intervals)} ranges")
    (interval,) = intervals
    if interval.lower is not None or interval.upper_inclusive or interval.limit is not None:
        return VersionProblem(
            "os-range-unrepresentable", f"{where}: {render_interval(pkg.placement.scheme, interval)}"
        )
    if interval.upper is None:
        if not pkg.placement.reports_unfixed:
            return VersionProblem(
                "os-unfixed-unmatched",
                f"{where}: no fixed version, and Trivy's {pkg.placement.source.id} detector matches "
                "only advisories that name one",
            )
        return {"Status": _STATUS_AFFECTED}
    return {"FixedVersion": interval.upper}


def _uniq_intervals(intervals: list[Interval]) -> list[Interval]:
    return list(dict.fromkeys(intervals))


def _vulnerability(
    document: Mapping[str, Any], record_id: str, source_ids: list[str]
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    problems: list[tuple[str, str]] = []
    out: dict[str, Any] = {}
    summary, details = document.get("summary"), document.get("details")
    if isinstance(summary, str) and summary:
        out["Title"] = summary
    if isinstance(details, str) and details:
        out["Description"] = details
    refs = document.get("references")
    if isinstance(refs, list):
        urls = sorted(
            {
                r["url"]
                for r in refs
                if (type(r) is dict or isinstance(r, Mapping)) and isinstance(r.get("url"), str) and r["url"]
            }
        )
        if urls:
            out["References"] = urls
    db_specific = document.get("database_specific")
    db_specific = db_specific if type(db_specific) is dict or isinstance(db_specific, Mapping) else {}
    cwes = _string_list(db_specific.get("cwe_ids"))
    if cwes:
        out["CweIDs"] = _uniq(cwes)
    for field_name, key in (("published", "PublishedDate"), ("modified", "LastModifiedDate")):
        stamp = document.get(field_name)
        if isinstance(stamp, str) and _RFC3339.fullmatch(stamp):
            out[key] = stamp
        elif stamp is not None:
            problems.append(("malformed", f"{field_name} {stamp!r} is not RFC 3339"))

    vectors: dict[str, str] = {}
    severities: list[Any] = (
        list(document.get("severity") or []) if isinstance(document.get("severity"), list) else []
    )
    for item in document.get("affected") or []:
        if (type(item) is dict or isinstance(item, Mapping)) and isinstance(item.get("severity"), list):
            severities.extend(item["severity"])
    for sev in severities:
        if (type(sev) is not dict and not isinstance(sev, Mapping)) or not isinstance(sev.get("score"), str):
            problems.append(("malformed", f"severity entry {sev!r}"))
            continue
        target = _CVSS_FIELD.get(str(sev.get("type")))
        if target is None:
            problems.append(("unsupported-severity", f"severity type {sev.get('type')!r}"))
        else:
            vectors.setdefault(target, sev["score"])  # record level first, then affected[] order
    if vectors and source_ids:
        out["CVSS"] = {source: dict(sorted(vectors.items())) for source in source_ids}

    stated = db_specific.get("severity")
    if stated is not None:
        level = _SEVERITY.get(stated.upper()) if isinstance(stated, str) else None
        if level is None:
            problems.append(("unsupported-severity", f"database_specific.severity {stated!r}"))
        elif source_ids:
            out["VendorSeverity"] = dict.fromkeys(source_ids, level)
    return out, problems


def _canon(value: JSONValue) -> bytes:
    # A string never needs dumps' safety walk (it only looks at keys and numbers); merging
    # values sorts lists of strings by this key, thousands per export.
    # (orjson writes a string exactly as dumps_plain does: no keys to sort, nothing to pass through.)
    return orjson.dumps(value) if type(value) is str else dumps(value)


def load_json(data: bytes) -> Any:
    """A ledger document (or a value this package wrote) as Python values.

    orjson, about three times the standard parser, takes every canonical document; what
    it refuses (integers beyond 64 bits) goes to the standard parser, which returns the
    same values orjson would have. Translation per advisory spent a tenth of its time here.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def merge_value(bucket: tuple[str, ...], a: JSONValue, b: JSONValue) -> JSONValue:
    """Combine two values emitted for the same (bucket, key) by different records.

    Commutative and associative, so merging in any order (any runner, any worker
    count) gives the same bytes. Lists union (sorted); per-source maps union; for a
    scalar both records set differently, the smaller canonical value wins -- arbitrary
    but reproducible, and only reachable when two feeds disagree on a title or date.
    """
    if a == b:
        return a
    if bucket == ("data-source",) or not isinstance(a, dict) or not isinstance(b, dict):
        return min(a, b, key=_canon)
    out: dict[str, Any] = {}
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            out[name] = a.get(name, b.get(name))
        elif isinstance(a[name], list) and isinstance(b[name], list):
            out[name] = sorted(set(a[name]) | set(b[name]), key=_canon)
        elif isinstance(a[name], dict) and isinstance(b[name], dict):
            out[name] = {
                k: (
                    a[name][k]
                    if k not in b[name]
                    else b[name][k]
                    if k not in a[name]
                    else min(a[name][k], b[name][k], key=_canon)
                )
                for k in sorted(set(a[name]) | set(b[name]))
            }
        else:
            out[name] = min(a[name], b[name], key=_canon)
    return out
