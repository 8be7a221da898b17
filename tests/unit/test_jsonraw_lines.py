"""The row read path writes the bytes the record path wrote: lines, keys, index rows, selection, summary.

json:raw and mirror:full build each line from the segment's Avro row (``row_items``,
``mirror_row_items``) instead of a ``LedgerRecord``. The oracles here are the builder
json:raw used before (kept verbatim below), RFC 8785 itself (a line is its own canonical
form), and the record-path selectors and high-water rule, over random records
(unicode, escapes, control characters, non-BMP text, big numbers, nested documents) and
every real shared advisory, SBOM and VEX document.
"""

from __future__ import annotations

import json
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stella.adapters.jsonraw import envelope_line, jsonraw_items, row_items, row_line
from stella.adapters.mirror.items import items_of_line, mirror_row_items
from stella.canonical import canonical_document, dumps_plain
from stella.errors import InputError
from stella.ledger.store import LedgerStore, read_rows, read_segment, record_to_row
from stella.model import DocFormat, Kind, LedgerRecord, Linkset, high_water_of, latest_high_water
from stella.selectors import parse_selectors
from stella.timefmt import is_after, is_placeholder, later

# Text that stresses JSON escaping: quotes, backslashes, every control character, DEL,
# line/paragraph separators, non-BMP characters (surrogate pairs in UTF-16).
_NASTY = [
    '"',
    "\\",
    "\x00",
    "\x1f",
    "\x7f",
    "\u2028",
    "\u2029",
    "😀",
    "\U0010ffff",
    "é",
    "\t\n\r\b\f",
    "</script>",
]
texts = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.lists(st.sampled_from(_NASTY), max_size=4).map("".join),
)
names = st.lists(texts, max_size=3).map(tuple)
_TIMES = st.sampled_from(
    [
        "2026-01-02T03:04:05Z",
        "2026-01-02T03:04:05.500000Z",
        "2025-12-31T23:59:59Z",
        "2027-06-01T00:00:00Z",  # after ingestion: an upstream typo
        "0001-01-01T00:00:00Z",  # Go's zero time: a placeholder
        "1970-01-01T00:00:00Z",  # Unix zero: a placeholder
        "1970-01-02T00:00:00Z",  # the first real moment
    ]
)
_INGESTED = st.sampled_from(["2026-01-02T03:04:05Z", "2026-11-27T00:00:00Z", "2026-01-02T03:04:05.250000Z"])
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.sampled_from([2**60, -(2**64), 10**21, 2**53])  # big integers a double holds exactly
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=25,
)


def _document(value: Any) -> bytes:
    try:
        return canonical_document(json.dumps(value))[1]
    except InputError:
        assume(False)
        raise


records = st.builds(
    LedgerRecord,
    tenant=st.sampled_from(["acme", "t-2"]),
    kind=st.sampled_from(list(Kind)),
    format=st.sampled_from(list(DocFormat)),
    upstream_id=texts,
    modified=st.none() | _TIMES,
    revision=st.none() | texts,
    source=texts,
    ingested_at=_INGESTED,
    digest=st.text(alphabet="0123456789abcdef", min_size=64, max_size=64).map("sha256:".__add__),
    document=json_values.map(_document),
    linkset=st.builds(
        Linkset,
        ecosystems=names,
        packages=names,
        purls=names,
        aliases=names,
        vex_products=names,
        sbom_subject=st.none() | texts,
        withdrawn=st.none() | _TIMES,
    ),
)


def _old_envelope_line(record: LedgerRecord) -> bytes:
    """The json:raw line builder before the row read path (verbatim, commit 5df44fb)."""
    rest: dict[str, Any] = {
        "format": record.format.value,
        "id": record.upstream_id,
        "ingestedAt": record.ingested_at,
        "kind": record.kind.value,
        "linkset": record.linkset.to_json(),
        "modified": record.modified,
        "revision": record.revision,
        "source": record.source,
        "tenant": record.tenant,
    }
    return b"".join(
        (
            b'{"digest":',
            dumps_plain(record.digest),
            b',"document":',
            record.document,
            b",",
            dumps_plain(rest)[1:],
        )
    )


def _old_sort_key(record: LedgerRecord) -> bytes:
    return b"\x00".join(
        (
            record.kind.value.encode(),
            record.upstream_id.encode(),
            (record.modified or "").encode(),
            record.digest.encode(),
        )
    )


def _old_high_water(modified: str | None, ingested_at: str) -> str:
    if modified is None or is_after(modified, ingested_at) or is_placeholder(modified):
        return ingested_at
    return modified


def _old_items(record: LedgerRecord) -> list[tuple[str, bytes, bytes]]:
    return [(record.kind.value, _old_sort_key(record), _old_envelope_line(record))]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(records)
def test_row_line_is_the_old_line_and_canonical(record: LedgerRecord) -> None:
    line = row_line(record_to_row(record))
    assert line == _old_envelope_line(record) == envelope_line(record)
    assert canonical_document(line)[1] == line  # RFC 8785 itself: the line is its own canonical form
    assert json.loads(line)["document"] == json.loads(record.document)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records, max_size=6))
def test_row_items_are_the_record_items(batch: list[LedgerRecord]) -> None:
    expected = [item for record in batch for item in _old_items(record)]
    assert row_items([record_to_row(r) for r in batch]) == expected
    assert [item for record in batch for item in jsonraw_items(record)] == expected


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records, min_size=1, max_size=8, unique_by=lambda r: (r.upstream_id, r.digest)))
def test_rows_read_back_from_a_segment_give_the_old_lines(batch: list[LedgerRecord]) -> None:
    tenant_batch = [LedgerRecord(**{**_fields(r), "tenant": "acme"}) for r in batch]
    with tempfile.TemporaryDirectory() as root:
        store = LedgerStore(root)
        info = store.write_segment("acme", tenant_batch)
        assert info is not None
        rows = [row for chunk in read_rows(info.path, chunk=3) for row in chunk]
        records = list(read_segment(info.path))
    assert row_items(rows) == [item for record in records for item in _old_items(record)]


def _fields(record: LedgerRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in LedgerRecord.__slots__}


@settings(max_examples=300)
@given(st.lists(st.tuples(st.none() | _TIMES, _INGESTED), max_size=8))
def test_latest_high_water_is_the_latest_old_high_water(times: list[tuple[str | None, str]]) -> None:
    assert latest_high_water(times) == later(*(_old_high_water(m, i) for m, i in times))
    for modified, ingested_at in times:
        assert high_water_of(modified, ingested_at) == _old_high_water(modified, ingested_at)


@pytest.fixture(scope="module")
def real(prepared_ledger: Path) -> tuple[list[dict[str, Any]], list[LedgerRecord]]:
    """Every shared advisory, SBOM and VEX document as rows and as records (the session's ledger)."""
    paths = [s.path for s in LedgerStore(str(prepared_ledger)).segments("acme")]
    rows = [row for path in paths for chunk in read_rows(path) for row in chunk]
    records = [record for path in paths for record in read_segment(path)]
    assert len(rows) == len(records) > 1000
    return rows, records


def test_real_records_give_the_old_lines_and_mirror_items(
    real: tuple[list[dict[str, Any]], list[LedgerRecord]],
) -> None:
    rows, records = real
    assert {r.kind for r in records} == {Kind.ADVISORY, Kind.SBOM, Kind.VEX}
    assert any(not line.isascii() for line in map(_old_envelope_line, records))  # real unicode is in there
    assert row_items(rows) == [item for record in records for item in _old_items(record)]
    # mirror:full: the lines and index rows the importer rebuilds from each old line
    expected = [item for r in records for item in items_of_line(_old_envelope_line(r), where="test")]
    assert mirror_row_items(rows) == expected


@pytest.mark.parametrize(
    "selectors",
    [
        [],
        ["kind=sbom,vex"],
        ["ecosystem=PyPI"],
        ["package=django*"],
        ["purl=pkg:pypi/*"],
        ["subject=*"],
        ["id=GHSA-*", "exclude-id=*-2021-*"],
        ["modified-since=2023-01-01", "modified-until=2024-06-01"],
        ["ingested-since=2020-01-01"],
    ],
)
def test_selectors_match_rows_as_records(
    real: tuple[list[dict[str, Any]], list[LedgerRecord]], selectors: list[str]
) -> None:
    rows, records = real
    parsed = parse_selectors(selectors)
    expected = [parsed.matches(r) for r in records]
    assert [parsed.matches_row(row) for row in rows] == expected
    assert parsed.is_empty == (not selectors)
    assert 0 < sum(expected) <= len(records)  # each selector set selects something real


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records)
def test_lines_and_index_rows_cost_their_size(record: LedgerRecord) -> None:
    """orjson hands back its whole output buffer (4 KiB for a short value) unless trimmed: items held for a
    sort (json:raw lines, mirror lines and index rows) must cost about their length, not 4 KiB each."""
    rows = [record_to_row(record)] * 200
    tracemalloc.start()
    try:
        items = [*row_items(rows), *mirror_row_items(rows)]
        used, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert used < sum(len(key) + len(value) + 200 for _group, key, value in items)
