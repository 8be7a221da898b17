"""End to end against the real Trivy 0.76: what it reports from our DB equals the OSV oracle.

Two DBs are built from adapter output (merged, then written with the project's bbolt
writer): one from every shared advisory, and one from synthetic advisories whose ranges
are placed around the real versions found in each SBOM -- the shared advisories barely
touch npm, Maven and Composer, so the synthetic set is what exercises those comparers,
pre-releases, ``last_affected``, listed versions and multi-range records. Each
CycloneDX SBOM is scanned offline; every difference from the oracle must be one of the
divergences listed in ``trivy_oracle.DIVERGENCES``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard

from stella.adapters.trivy.osv import TrivyEntry, translate_osv
from tests.adapters.trivy_oracle import (
    DIVERGENCES,
    PURL_ECOSYSTEMS,
    Component,
    expected_findings,
    parse_version,
)
from tests.adapters.trivy_scan import (
    compare_findings,
    findings_context,
    sbom_components,
    scan_sbom,
    write_trivy_db,
)
from tests.support import DATA, require_tool

pytestmark = [pytest.mark.trivy, pytest.mark.slow]

_SCANNED_TYPES = {"pypi", "npm", "maven", "golang", "composer"}


def _sboms() -> list[Path]:
    folder = DATA / "sboms" / "cyclonedx"
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        types = {c.purl_type for c in sbom_components(json.loads(path.read_text()))}
        if types & _SCANNED_TYPES:
            out.append(path)
    return out


def _records(shared: Path) -> Iterator[dict[str, Any]]:
    for path in sorted((shared / "advisories").glob("*.jsonl.zst")):
        with path.open("rb") as handle:
            data = zstandard.ZstdDecompressor().stream_reader(handle).read()
        for line in data.splitlines():
            yield json.loads(line)


def _build(cache: Path, records: list[dict[str, Any]]) -> None:
    entries: list[TrivyEntry] = []
    for record in records:
        entries.extend(translate_osv(record, upstream_id=str(record.get("id"))).entries)
    write_trivy_db(cache, entries)


@pytest.fixture(scope="module")
def trivy() -> str:
    return require_tool("trivy")


@pytest.fixture(scope="module")
def shared_db(
    shared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[dict[str, Any]]]:
    records = list(_records(shared_data))
    cache = tmp_path_factory.mktemp("trivy-shared")
    _build(cache, records)
    return cache, records


def _check(trivy: str, cache: Path, sbom: Path, records: list[dict[str, Any]]) -> None:
    components = sbom_components(json.loads(sbom.read_text()))
    expected = expected_findings(records, components)
    actual = scan_sbom(trivy, cache, sbom)
    diff, accepted = compare_findings(actual, expected, findings_context(records))
    print(
        f"\n{sbom.name}: trivy {len(actual)} findings, oracle {len(expected)}, accepted divergences {accepted}"
    )
    if diff:
        listing = "\n".join(f"  {d.name}: {d.reason}" for d in DIVERGENCES)
        pytest.fail(
            f"{sbom.name}: Trivy and the OSV oracle disagree\n{diff}\naccepted divergences:\n{listing}"
        )


@pytest.mark.parametrize("sbom", _sboms(), ids=lambda p: p.name)
def test_shared_advisories_scan_equals_oracle(
    trivy: str, shared_db: tuple[Path, list[dict[str, Any]]], sbom: Path
) -> None:
    cache, records = shared_db
    _check(trivy, cache, sbom, records)


# --- synthetic advisories around real SBOM versions ----------------------------------------

_OSV_NAME = {"PyPI", "npm", "Maven", "Go", "Packagist"}
_PRE = {"PyPI": "rc1", "npm": "-rc.1", "Go": "-rc.1", "Maven": "-RC1", "Packagist": "-RC1"}


def _bound(ecosystem: str, version: str) -> str:
    return version[1:] if ecosystem == "Go" and version.startswith("v") else version


def _shapes(ecosystem: str, v: str, lower: str | None, upper: str | None) -> list[dict[str, Any]]:
    """Affected entries (without package) of several OSV shapes around version ``v``."""

    def rng(*events: dict[str, str]) -> dict[str, Any]:
        return {"ranges": [{"type": "ECOSYSTEM", "events": list(events)}]}

    shapes = [
        rng({"introduced": "0"}, {"fixed": v}),  # fixed at v: not affected
        rng({"introduced": v}),  # affected from v on
        rng({"introduced": "0"}, {"last_affected": v}),  # affected up to and including v
        rng({"introduced": "0"}),  # every version
        {"versions": [v]},  # listed exactly
        rng({"introduced": "0"}, {"fixed": v + _PRE[ecosystem]}),  # fixed in v's pre-release: not affected
        rng({"introduced": v + _PRE[ecosystem]}, {"last_affected": v}),  # pre-release to v: affected
    ]
    if lower is not None:
        shapes += [
            rng({"introduced": "0"}, {"last_affected": lower}),  # ends below v
            rng({"introduced": lower}, {"fixed": v}, {"introduced": v + ".1" if ecosystem != "npm" else v}),
        ]
    if upper is not None:
        shapes += [
            rng({"introduced": upper}),  # starts above v
            rng({"introduced": "0"}, {"fixed": lower or upper}, {"introduced": upper}),
        ]
    if lower is not None and upper is not None:
        shapes.append(rng({"introduced": lower}, {"fixed": upper}))
    return shapes


def synthetic_records(components: list[Component], *, limit: int = 40) -> list[dict[str, Any]]:
    """Deterministic OSV records placing ranges around the components' own versions."""
    by_eco: dict[str, list[Component]] = {}
    for comp in components:
        eco = PURL_ECOSYSTEMS.get(comp.purl_type)
        if eco in _OSV_NAME and parse_version(eco, comp.version) is not None and "+" not in comp.version:
            by_eco.setdefault(eco, []).append(comp)
    records: list[dict[str, Any]] = []
    for eco, comps in sorted(by_eco.items()):
        pool = sorted({_bound(eco, c.version) for c in comps}, key=lambda raw: _SortKey(eco, raw))
        picked = sorted(set(comps), key=lambda c: (c.name, c.version))[:: max(1, len(comps) // limit)][:limit]
        for comp in picked:
            v = _bound(eco, comp.version)
            at = pool.index(v)
            lower = pool[at - 1] if at > 0 else None
            upper = pool[at + 1] if at + 1 < len(pool) else None
            for shape_no, shape in enumerate(_shapes(eco, v, lower, upper)):
                record_id = f"STELLA-{eco}-{len(records):05d}-{shape_no}"
                affected = {"package": {"ecosystem": eco, "name": comp.name}, **shape}
                records.append({"id": record_id, "summary": "synthetic", "affected": [affected]})
    return records


class _SortKey:
    __slots__ = ("v",)

    def __init__(self, eco: str, raw: str) -> None:
        self.v: Any = parse_version(eco, raw)

    def __lt__(self, other: _SortKey) -> bool:
        return bool(self.v < other.v)  # both parsed: synthetic_records filters unparsable versions


@pytest.mark.parametrize("sbom", _sboms(), ids=lambda p: p.name)
def test_synthetic_ranges_scan_equals_oracle(trivy: str, tmp_path: Path, sbom: Path) -> None:
    components = sbom_components(json.loads(sbom.read_text()))
    records = synthetic_records(components)
    if not records:
        pytest.skip(f"{sbom.name}: no component with a version the oracle can order")
    _build(tmp_path, records)
    _check(trivy, tmp_path, sbom, records)


# --- the accepted divergences are real, and only they are accepted --------------------------


def test_listed_divergences_are_trivy_behaviour(trivy: str, tmp_path: Path) -> None:
    """Each entry of DIVERGENCES, provoked on purpose: Trivy differs exactly as listed."""

    def record(record_id: str, name: str, fixed: str) -> dict[str, Any]:
        events = [{"introduced": "0"}, {"fixed": fixed}]
        return {"id": record_id, "affected": [{"package": {"ecosystem": "PyPI", "name": name}, "ranges": [{"type": "ECOSYSTEM", "events": events}]}]}  # fmt: skip

    records = [
        record("STELLA-DOTS-1", "zope-interface", "6.0"),  # PEP 503 says this is zope.interface
        record("STELLA-LOCAL-1", "torch", "2.6.0+cu124"),  # a local label Trivy cannot parse
        record("STELLA-PLAIN-1", "requests", "2.20.0"),  # control: both sides agree
    ]
    components = [("zope.interface", "5.0"), ("torch", "2.5.0"), ("requests", "2.19.0")]
    sbom = tmp_path / "divergences.cdx.json"
    sbom.write_text(
        json.dumps(
            {
                "bomFormat": "CycloneDX",
                "specVersion": "1.5",
                "version": 1,
                "components": [
                    {"type": "library", "name": n, "version": v, "purl": f"pkg:pypi/{n}@{v}"}
                    for n, v in components
                ],
            }
        )
    )
    cache = tmp_path / "cache"
    _build(cache, records)
    actual = scan_sbom(trivy, cache, sbom)
    expected = expected_findings(records, sbom_components(json.loads(sbom.read_text())))
    assert actual == {("requests", "2.19.0", "STELLA-PLAIN-1")}
    diff, accepted = compare_findings(actual, expected, findings_context(records))
    assert diff is None
    assert accepted == {"pip-name-dots": 1, "pep440-local-label": 1}
    assert {d.name for d in DIVERGENCES} == set(accepted)
