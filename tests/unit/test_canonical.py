"""RFC 8785: our fast path must equal the reference implementation byte for byte."""

from __future__ import annotations

import json
import tracemalloc

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from stella.canonical import canonical_document, dumps, dumps_plain, sha256_digest
from stella.errors import InputError

_SAFE_INT = 2**53 - 1
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-_SAFE_INT, max_value=_SAFE_INT)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=400)
@given(json_values)
def test_dumps_equals_reference(value: object) -> None:
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        with pytest.raises(InputError):
            dumps(value)
        return
    assert dumps(value) == expected


@settings(max_examples=300)
@given(json_values)
def test_canonical_document_round_trip(value: object) -> None:
    text = json.dumps(value, ensure_ascii=len(str(value)) % 2 == 0, indent=1)
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        with pytest.raises(InputError):
            canonical_document(text.encode())
        return
    parsed, canonical = canonical_document(text.encode())
    assert canonical == expected
    assert canonical_document(canonical)[0] == parsed  # same JSON value (numbers as doubles)
    # canonical form is a fixed point
    assert canonical_document(canonical)[1] == canonical


def test_non_bmp_keys_sort_by_utf16_code_units() -> None:
    # U+1F600 (surrogates D83D DE00) sorts before U+FFFD in UTF-16 but after it by code point.
    value = {"\ufffd": 1, "\U0001f600": 2}
    assert dumps(value) == rfc8785.dumps(value)
    assert dumps(value).index("\U0001f600".encode()) < dumps(value).index("\ufffd".encode())


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b'{"a": NaN}', "NaN is not a JSON number"),
        (b'{"a": 1, "a": 2}', "duplicate key"),
        (b"\xff\xfe{}", "UTF-8"),
        (b'{"a": 1', "invalid JSON"),
        (b'{"a": 123456789012345678901234567890}', "canonicalised"),
    ],
)
def test_uncanonicalisable_input_is_a_clear_error(raw: bytes, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        canonical_document(raw)


def test_digest_notation() -> None:
    assert sha256_digest(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@settings(max_examples=300)
@given(
    st.dictionaries(
        st.text(alphabet=st.characters(max_codepoint=127), max_size=10),
        st.none() | st.booleans() | st.text() | st.lists(st.text(), max_size=4),
        max_size=8,
    )
)
def test_plain_fast_path_equals_reference_for_envelope_shaped_values(value: dict[str, object]) -> None:
    from stella.canonical import dumps_plain

    assert dumps_plain(value) == rfc8785.dumps(value)


@pytest.mark.parametrize(
    "value",
    [
        {"c": '\x00\x01\x08\t\n\x0b\x0c\r\x1f\x7f"\\/\u2028\u2029\ufeff\uffff é'},
        [[[["deep"]]]] * 3,
        {"n": [0, -1, _SAFE_INT, -_SAFE_INT, True, False, None]},
    ],
)
def test_orjson_path_escapes_and_orders_as_jcs(value: object) -> None:
    assert dumps(value) == rfc8785.dumps(value)


def test_what_orjson_refuses_takes_the_standard_path() -> None:
    # orjson stops at 255 levels of nesting; JSON (and json.loads) allow more.
    deep: object = "leaf"
    for _ in range(300):
        deep = [deep]
    assert dumps(deep) == b"[" * 300 + b'"leaf"' + b"]" * 300
    parsed, canonical = canonical_document(b"[" * 300 + b"1" + b"]" * 300)
    assert canonical == b"[" * 300 + b"1" + b"]" * 300
    # a lone surrogate has no UTF-8 form: still the documented error, not orjson's
    with pytest.raises(InputError, match="canonicalised"):
        canonical_document(b'{"a": "\\ud800"}')


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # an escaped non-BMP key must sort by UTF-16 code units (reference path)
        (b'{"\\uffff": 1, "\\ud83d\\ude00": 2}', '{"\U0001f600":2,"\uffff":1}'.encode()),
        # the same key written as UTF-8 bytes
        ('{"\uffff": 1, "\U0001f600": 2}'.encode(), '{"\U0001f600":2,"\uffff":1}'.encode()),
    ],
)
def test_non_bmp_keys_are_found_escaped_or_not(raw: bytes, expected: bytes) -> None:
    assert canonical_document(raw)[1] == expected


def test_encoded_values_cost_their_size() -> None:
    """orjson's 4 KiB output buffer is not kept: 2,000 short rows take about their length, not 8 MB."""
    values = [["pkg:pypi/x@1.0", "pkg:pypi/x", "advisory", f"PYSEC-{n}", "sha256:00"] for n in range(2_000)]
    tracemalloc.start()
    try:
        encoded = [dumps_plain(v) for v in values] + [dumps(v) for v in values]
        used, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert used < sum(len(e) + 100 for e in encoded) + 64_000
