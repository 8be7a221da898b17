"""json:raw's compiled line builder (stella/adapters/_jsonrawc.pyx) against the Python builder.

The compiled loop is a fast path: its items must be the Python builder's byte for byte
(orjson + the envelope dict), and whatever it refuses must raise so that the Python
builder decides. Hypothesis drives every JSON escaping case (quotes, backslashes, C0
controls, DEL, U+2028, astral characters) and the optional linkset fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stella.adapters import jsonraw
from stella.ledger.store import read_rows
from tests.support import ledger_rows, require

compiled = jsonraw._compiled_row_items


def _require() -> Any:
    require(compiled is not None, "stella.adapters._jsonrawc (built by setup.py; needs a C compiler)")
    return compiled


def _outcome(rows: list[dict[str, Any]]) -> Any:
    """The items ``jsonraw.row_items`` builds, or the type of what it raises."""
    try:
        return jsonraw.row_items(rows)
    except Exception as exc:  # the same failure, whichever builder ran
        return type(exc)


def _python_items(rows: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as patch:
        patch.setattr(jsonraw, "_compiled_row_items", None)
        return _outcome(rows)


_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=30) | st.sampled_from(
    ['"', "\\", "\x00\x01\x1f", "\b\t\n\f\r", "\x7f", "\u2028\u2029", "é𝄞", "</script>"]
)
_ROWS = ledger_rows(
    _TEXT,
    st.sampled_from([b"{}", b'{"a":[1,2,{"b":"\\u0000"}]}', b"null"]),
    kinds=["advisory", "sbom", "vex", "finding"],
    list_size=3,
)


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(_ROWS, max_size=8))
def test_compiled_items_are_the_python_builders_bytes(rows: list[dict[str, Any]]) -> None:
    builder = _require()
    with pytest.MonkeyPatch.context() as patch:
        assert builder(rows) == _python_items(rows, patch)


def test_real_rows_build_the_same_items(prepared_ledger: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builder = _require()
    total = 0
    for segment in sorted(prepared_ledger.rglob("*.avro")):
        for rows in read_rows(str(segment)):
            assert builder(rows) == _python_items(rows, monkeypatch)
            total += len(rows)
    assert total > 1000


def test_the_pipelines_batches_go_through_the_compiled_loop(
    prepared_ledger: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The export hands ``row_items`` a ``RowBatch`` (a list subclass), decoded by the batch coder
    when it crosses a stage: the compiled loop must take it, not fall back to the Python builder."""
    from transforms.coders import BatchCoder, RowBatch

    _require()
    segment = sorted(prepared_ledger.rglob("*.avro"))[0]
    rows = next(read_rows(str(segment)))
    expected = _python_items(rows, monkeypatch)
    coder = BatchCoder(RowBatch)

    def python_builder_used(row: object) -> None:
        raise AssertionError("the Python builder built a line")

    monkeypatch.setattr(jsonraw, "_row_envelope", python_builder_used)
    monkeypatch.setattr(jsonraw, "row_line", python_builder_used)
    for batch in (RowBatch(rows), coder.decode(coder.encode(RowBatch(rows))), tuple(rows)):
        assert jsonraw._compiled_row_items(batch) == expected  # type: ignore[misc]
    assert jsonraw.row_items(RowBatch(rows)) == expected


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("upstream_id", "\ud800", UnicodeEncodeError),  # a lone surrogate: orjson's refusal path decides
        ("upstream_id", 7, TypeError),
        ("document", "{}", TypeError),
        ("aliases", ("a",), TypeError),
        ("modified", b"2024", TypeError),
    ],
)
def test_what_the_loop_refuses_the_python_builder_decides(
    field: str, value: object, error: type[Exception], monkeypatch: pytest.MonkeyPatch
) -> None:
    builder = _require()
    row = {
        "tenant": "acme", "kind": "advisory", "format": "osv", "upstream_id": "X-1", "modified": None,
        "revision": None, "source": "s", "ingested_at": "2024-01-01T00:00:00Z", "digest": "sha256:00",
        "document": b"{}", "ecosystems": [], "packages": [], "purls": [], "aliases": [], "vex_products": [],
        "sbom_subject": None, "withdrawn": None,
    }  # fmt: skip
    row[field] = value
    with pytest.raises(error):
        builder([row])
    assert _outcome([row]) == _python_items([row], monkeypatch)  # whatever Python makes of it
