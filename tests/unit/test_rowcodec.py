"""The compiled row decoder (stella/ledger/_rowcodec.pyx) against fastavro, its reference.

The decoder is a fast path only: whatever it returns must be exactly fastavro's rows, and
whatever it refuses goes to fastavro. So every test compares with fastavro itself: real
documents, generated rows, hand-encoded blocks fastavro's writer never produces (array
blocks with a byte size), and damaged segments, where both paths must give the same rows
or both fail with the segment named.
"""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stella.errors import InputError
from stella.ledger import store
from stella.ledger.store import _kind_symbols, _schema, read_rows
from tests.support import ledger_rows, require

decode_block = store._decode_block
KINDS = _kind_symbols()
_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _require_decoder() -> Any:
    require(decode_block is not None, "stella.ledger._rowcodec (built by setup.py; needs a C compiler)")
    return decode_block


def _fastavro_rows(path: Path) -> list[dict[str, Any]] | str:
    """The reference: fastavro's own reader, or the kind of failure it raises."""
    try:
        with path.open("rb") as handle:
            return list(fastavro.reader(handle))  # type: ignore[arg-type]
    except Exception:  # a damaged header trips fastavro with KeyError & co.; ours names the segment
        return "error"


def _our_rows(path: Path) -> list[dict[str, Any]] | str:
    try:
        return [row for chunk in read_rows(str(path)) for row in chunk]  # type: ignore[misc]
    except InputError as exc:
        assert str(path) in str(exc)  # the damage names its segment
        return "error"


_TEXT = st.text(max_size=40)
_ROWS = ledger_rows(_TEXT, st.binary(max_size=300), kinds=KINDS)


def _segment(path: Path, rows: list[dict[str, Any]], *, codec: str = "zstandard", schema: Any = None) -> Path:
    with path.open("wb") as handle:
        fastavro.writer(handle, schema or _schema(), rows, codec=codec, sync_interval=512)
    return path


def test_the_compiled_decoder_is_built_and_decodes_every_block_of_a_ledger_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoder = _require_decoder()
    calls: list[int] = []

    def counted(data: memoryview, count: int, kinds: tuple[str, ...]) -> Any:
        calls.append(count)
        return decoder(data, count, kinds)

    monkeypatch.setattr(store, "_decode_block", counted)
    rows = [dict(_minimal(), upstream_id=f"ID-{i:04d}") for i in range(300)]
    path = _segment(tmp_path / "s.avro", rows)
    assert _our_rows(path) == rows
    assert len(calls) > 1 and sum(calls) == len(rows)  # every block, none left to fastavro


def test_every_real_document_reads_as_fastavro_reads_it(prepared_ledger: Path) -> None:
    _require_decoder()
    segments = sorted(prepared_ledger.rglob("*.avro"))
    assert segments
    total = 0
    for segment in segments:
        expected = _fastavro_rows(segment)
        assert isinstance(expected, list)
        assert _our_rows(segment) == expected
        total += len(expected)
    assert total > 1000


@_SETTINGS
@given(rows=st.lists(_ROWS, max_size=40), codec=st.sampled_from(["zstandard", "null", "deflate"]))
def test_generated_rows_read_as_fastavro_reads_them(
    tmp_path: Path, rows: list[dict[str, Any]], codec: str
) -> None:
    _require_decoder()
    path = _segment(tmp_path / f"g-{codec}.avro", rows, codec=codec)
    assert _our_rows(path) == _fastavro_rows(path) == rows


def _long(value: int) -> bytes:
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while zigzag > 0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return _long(len(raw)) + raw


def _array_in_sized_blocks(items: list[str]) -> bytes:
    """Items in blocks of two, each with a negative count and its byte size (Avro allows it)."""
    out = b""
    for start in range(0, len(items), 2):
        body = b"".join(map(_string, items[start : start + 2]))
        out += _long(-len(items[start : start + 2])) + _long(len(body)) + body
    return out + _long(0)


def test_array_blocks_with_byte_sizes_decode_as_fastavro_decodes_them() -> None:
    decoder = _require_decoder()
    aliases = ["CVE-2024-1", "GHSA-x", "é", "𝄞", "last"]
    row = (
        _string("acme") + _long(2) + _string("openvex") + _string("id") + _long(1) + _string("2024-01-01T00:00:00Z")
        + _long(0) + _string("s") + _string("2024") + _string("sha256:00") + _long(2) + b"{}"
        + _long(0) + _long(0) + _long(0) + _array_in_sized_blocks(aliases) + _long(0) + _long(0) + _long(1) + _string("w")
    )  # fmt: skip
    expected = fastavro.schemaless_reader(BytesIO(row), _schema())
    assert expected["aliases"] == aliases
    assert decoder(row * 3, 3, KINDS) == [expected] * 3


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=200), count=st.integers(min_value=-2, max_value=4))
def test_whatever_the_decoder_accepts_is_what_fastavro_reads(data: bytes, count: int) -> None:
    """Hostile block bytes: the decoder either refuses (ValueError) or returns fastavro's rows."""
    decoder = _require_decoder()
    try:
        rows = decoder(data, count, KINDS)
    except ValueError:
        return
    handle = BytesIO(data)
    parsed = fastavro.parse_schema(_schema())
    assert rows == [fastavro.schemaless_reader(handle, parsed) for _ in range(count)]  # type: ignore[arg-type]
    assert handle.tell() == len(data)


def test_refused_lengths_counts_and_branches_are_value_errors() -> None:
    decoder = _require_decoder()
    cases = {
        b"": 1,  # a row past the end
        _long(1 << 40) + b"x": 1,  # a length past the block
        _long(-1): 1,  # a negative length
        b"\xff" * 11: 1,  # a varint longer than 10 bytes
        _string("t") + _long(9): 1,  # enum index out of range
        _long(0): 0,  # bytes left over
    }
    for data, count in cases.items():
        with pytest.raises(ValueError):
            decoder(data, count, KINDS)
    with pytest.raises(ValueError):
        decoder(b"", -1, KINDS)
    with pytest.raises(UnicodeDecodeError):  # strict UTF-8, as fastavro's default
        decoder(_string("t")[:1] + b"\xff", 1, KINDS)


@pytest.mark.parametrize("codec", ["null", "zstandard"])
def test_damaged_segments_give_fastavros_rows_or_an_error_naming_the_segment(
    tmp_path: Path, codec: str
) -> None:
    rows = [
        {
            "tenant": "acme", "kind": KINDS[i % len(KINDS)], "format": "osv", "upstream_id": f"ID-{i}",
            "modified": None if i % 3 else "2024-01-01T00:00:00Z", "revision": None, "source": f"#{i}",
            "ingested_at": "2024-02-01T00:00:00Z", "digest": f"sha256:{i:064x}", "document": b'{"id":%d}' % i,
            "ecosystems": ["npm"] * (i % 3), "packages": [f"p{i}"], "purls": [], "aliases": [f"CVE-{i}"],
            "vex_products": [], "sbom_subject": None, "withdrawn": None,
        }
        for i in range(40)
    ]  # fmt: skip
    good = _segment(tmp_path / "good.avro", rows, codec=codec).read_bytes()
    path = tmp_path / "damaged.avro"
    outcomes = set()
    for offset in range(0, len(good), 3):  # every third byte, the header's too
        for damage in (bytes([good[offset] ^ 0x41]), b""):
            path.write_bytes(good[:offset] + damage + good[offset + 1 :] if damage else good[:offset])
            expected, ours = _fastavro_rows(path), _our_rows(path)
            assert ours == expected, (offset, damage)
            outcomes.add("error" if ours == "error" else "rows")
    assert outcomes == {"error", "rows"}


def test_a_segment_with_another_schema_is_read_by_fastavro_alone(tmp_path: Path) -> None:
    schema = json.loads(json.dumps(_schema()))
    schema["fields"] = [*schema["fields"][1:], schema["fields"][0]]  # same fields, another order
    row = {
        "tenant": "acme", "kind": "vex", "format": "openvex", "upstream_id": "x", "modified": None,
        "revision": None, "source": "s", "ingested_at": "t", "digest": "d", "document": b"{}",
        "ecosystems": [], "packages": [], "purls": [], "aliases": [], "vex_products": ["p"],
        "sbom_subject": None, "withdrawn": None,
    }  # fmt: skip
    path = _segment(tmp_path / "other.avro", [row] * 5, schema=schema)
    assert _our_rows(path) == _fastavro_rows(path) == [row] * 5


def test_chunks_hold_the_rows_in_order_whatever_the_blocks(tmp_path: Path) -> None:
    rows = [dict(r, upstream_id=f"ID-{i:04d}") for i, r in enumerate([_minimal()] * 2500)]
    path = _segment(tmp_path / "c.avro", rows)
    chunks = list(read_rows(str(path), chunk=1024))
    assert [len(c) for c in chunks] == [1024, 1024, 452]
    assert [row for chunk in chunks for row in chunk] == rows


def _minimal() -> dict[str, Any]:
    return {
        "tenant": "acme", "kind": "advisory", "format": "osv", "upstream_id": "", "modified": None,
        "revision": None, "source": "s", "ingested_at": "t", "digest": "d", "document": b"{}",
        "ecosystems": [], "packages": [], "purls": [], "aliases": [], "vex_products": [],
        "sbom_subject": None, "withdrawn": None,
    }  # fmt: skip
