"""The Trivy adapters' fast paths give exactly what the general paths they shortcut give.

The trivy:db translation memoizes per scheme and per feed prefix, compares PEP 440
versions by their key tuples and joins text keys once; every shortcut must be
invisible in the output bytes, so each is checked here against the slow path it skips.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.version import Version

from stella.adapters.trivy.dbitems import is_osv_advisory, is_osv_row, trivy_db_items, trivy_db_row_items
from stella.adapters.trivy.ecosystems import _place, language_ecosystems, place
from stella.adapters.trivy.javaitems import is_sbom, is_sbom_row, java_db_items, java_db_row_items
from stella.adapters.trivy.osv import translate_entries, translate_osv
from stella.adapters.trivy.sortkeys import encode_parts, encode_text_parts
from stella.adapters.trivy.versions import (
    Interval,
    IntervalSet,
    Scheme,
    render_version,
    version_key,
    version_renderer,
)
from stella.ledger.store import LedgerStore, read_rows, record_from_row

_TEXT = st.text(alphabet=st.sampled_from(["a", "é", "\x00", "\x01", "\xff", "-", "𝄞"]), max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.lists(_TEXT, max_size=4))
def test_text_keys_equal_the_byte_encoding(parts: list[str]) -> None:
    assert encode_text_parts(parts) == encode_parts(part.encode() for part in parts)


_IDS = ["GHSA-1234-abcd", "GHSA", "GHSAX-1", "PYSEC-2024-1", "GO-2022-0001", "GO", "GOX-1", "RUSTSEC-2021-1",
        "BIT-x-2024-1", "CVE-2024-1", "SYN-PYSEC-1", "-leading", "plain"]  # fmt: skip


@pytest.mark.parametrize("record_id", _IDS)
def test_placement_memoized_by_feed_prefix_equals_the_full_id(record_id: str) -> None:
    ecosystems = [eco.osv for eco in language_ecosystems()] + ["Debian:12", "Alpine:v3.18", "Debian", "Nope"]
    for ecosystem in ecosystems:
        for name in ("Some_Pkg", "github.com/x/y", ""):
            assert place(ecosystem, name, record_id=record_id) == _place(ecosystem, name, record_id)


_PEP440 = ["0", "1.0", "1.0.0", "1.0a1", "1.0.post1", "1.0.dev0", "1!0.1", "2.0rc1", "2.0", "10", "1.0+local"]


def test_pep440_ranges_compare_as_packaging_orders() -> None:
    versions = [*_PEP440, "not a version"]
    intervals = [Interval("1.0", "2.0"), Interval("1!0", None, False, "1!1"), Interval(None, "1.0a1", True)]
    ranges = IntervalSet(Scheme.PEP440, intervals)
    expected: list[bool | None] = []
    for raw in versions:
        key = version_key(Scheme.PEP440, raw)
        if key is None:
            expected.append(None)
            continue
        expected.append(
            any(
                (i.lower is None or key >= Version(i.lower))
                and (
                    i.upper is None
                    or key < Version(i.upper)
                    or (i.upper_inclusive and key == Version(i.upper))
                )
                and (i.limit is None or key < Version(i.limit))
                for i in intervals
            )
        )
    assert ranges.covering(versions) == expected
    assert [ranges.covers(v) for v in versions] == expected


@pytest.mark.parametrize("scheme", list(Scheme))
def test_version_renderer_equals_render_version(scheme: Scheme) -> None:
    render = version_renderer(scheme)
    for raw in [*_PEP440, "", "v1.2.3", "1.2.3-r0", "1:2.3-4", "a b", "1.2.3_rc1-r0", "18446744073709551616"]:
        assert render(raw) == render_version(scheme, raw)
        assert render(raw) == render_version(scheme, raw)  # a memo hit equals the first answer


def test_translate_entries_equal_translate_osv() -> None:
    document = {
        "id": "GHSA-aaaa-bbbb-cccc",
        "aliases": ["CVE-2024-1", "CVE-2024-2"],
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "Demo_Pkg"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.2"}]}],
                "versions": ["1.0", "1.1", "3.0"],
            }
        ],
        "summary": "demo",
    }
    entries, problems = translate_entries(document, upstream_id="x")
    out = translate_osv(document, upstream_id="x")
    assert [(e.bucket, e.key, e.value) for e in out.entries] == entries
    assert out.untranslated == problems
    # translate_osv hands out one value object per entry; translate_entries may share them
    assert len({id(e.value) for e in out.entries}) == len(out.entries)


def test_row_adapters_equal_the_record_adapters(prepared_ledger: Path) -> None:
    """The trivy profiles read rows; their items are the record adapters' items, row for row."""
    kept = {"db": 0, "java": 0}
    for segment in LedgerStore(str(prepared_ledger)).segments("acme"):
        for rows in read_rows(segment.path):
            records = [record_from_row(row) for row in rows]
            assert [is_osv_row(r) for r in rows] == [is_osv_advisory(r) for r in records]
            assert [is_sbom_row(r) for r in rows] == [is_sbom(r) for r in records]
            osv = [(row, rec) for row, rec in zip(rows, records, strict=True) if is_osv_advisory(rec)]
            sboms = [(row, rec) for row, rec in zip(rows, records, strict=True) if is_sbom(rec)]
            expected = [item for _row, rec in osv for item in trivy_db_items(rec)]
            assert trivy_db_row_items([row for row, _rec in osv]) == expected
            expected = [item for _row, rec in sboms for item in java_db_items(rec)]
            assert java_db_row_items([row for row, _rec in sboms]) == expected
            kept["db"] += len(osv)
            kept["java"] += len(sboms)
    assert kept["db"] > 9_000 and kept["java"] > 10, kept
