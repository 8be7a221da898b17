"""Selector grammar and semantics, including property tests of the AND/OR laws."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stella.errors import UsageError
from stella.model import DocFormat, Kind, LedgerRecord, Linkset
from stella.selectors import SELECTOR_KEYS, parse_selectors


def record(**overrides: object) -> LedgerRecord:
    base = LedgerRecord(
        tenant="acme",
        kind=Kind.ADVISORY,
        format=DocFormat.OSV,
        upstream_id="PYSEC-2021-1",
        modified="2021-06-01T00:00:00Z",
        revision=None,
        source="x.jsonl#1",
        ingested_at="2026-01-01T00:00:00Z",
        digest="sha256:" + "0" * 64,
        document=b"{}",
        linkset=Linkset(
            ecosystems=("PyPI",), packages=("django",), purls=("pkg:pypi/django",), aliases=("CVE-2021-1",)
        ),
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def test_unknown_key_lists_valid_keys() -> None:
    with pytest.raises(UsageError) as caught:
        parse_selectors(["colour=blue"])
    for key in SELECTOR_KEYS:
        assert key in caught.value.message
    assert caught.value.details["validKeys"] == list(SELECTOR_KEYS)


@pytest.mark.parametrize(
    ("argument", "fragment"),
    [
        ("kind=widget", "valid kinds are advisory, sbom, vex, finding"),
        ("modified-since=yesterday", "not an RFC 3339"),
        ("ecosystem=", "empty value"),
        ("ecosystem", "not key=value"),
        ("modified-since=2020-01-01,2021-01-01", "takes one value"),
    ],
)
def test_bad_values_are_named(argument: str, fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        parse_selectors([argument])


def test_empty_window_rejected() -> None:
    with pytest.raises(UsageError, match="empty time window"):
        parse_selectors(["modified-since=2022-01-01", "modified-until=2021-01-01"])


def test_semantics_examples() -> None:
    r = record()
    assert parse_selectors([]).matches(r)
    assert parse_selectors(["ecosystem=pypi"]).matches(r)  # case-insensitive
    assert not parse_selectors(["ecosystem=Go"]).matches(r)
    assert parse_selectors(["ecosystem=Go,PyPI"]).matches(r)
    assert parse_selectors(["package=dj*"]).matches(r)
    assert parse_selectors(["purl=pkg:pypi/*"]).matches(r)
    assert parse_selectors(["id=CVE-2021-*"]).matches(r)  # aliases count as ids
    assert not parse_selectors(["exclude-id=cve-2021-1"]).matches(r)
    assert parse_selectors(["kinds=advisories"]).matches(r)
    assert not parse_selectors(["kind=sbom"]).matches(r)
    assert parse_selectors(["modified-since=2021-06-01"]).matches(r)  # inclusive
    assert not parse_selectors(["modified-until=2021-06-01"]).matches(r)  # exclusive
    assert not parse_selectors(["modified-since=2000-01-01"]).matches(replace(r, modified=None))
    assert not parse_selectors(["subject=*"]).matches(r)  # advisories have no SBOM subject
    assert parse_selectors(["ingested-until=2027-01-01"]).matches(r)


ecosystems = st.sampled_from(["PyPI", "Go", "npm", "Maven", "crates.io"])
records = st.builds(
    lambda eco, kind, pkg, ident: record(
        kind=kind,
        upstream_id=ident,
        linkset=Linkset(ecosystems=tuple(eco), packages=(pkg,), purls=(f"pkg:x/{pkg}",)),
    ),
    st.sets(ecosystems, max_size=2),
    st.sampled_from(list(Kind)),
    st.sampled_from(["django", "flask", "requests", "lodash"]),
    st.sampled_from(["A-1", "A-2", "B-1", "GHSA-x"]),
)
clauses = st.lists(
    st.one_of(
        st.builds(lambda v: f"ecosystem={','.join(sorted(v))}", st.sets(ecosystems, min_size=1, max_size=3)),
        st.builds(lambda v: f"kind={v.value}", st.sampled_from(list(Kind))),
        st.builds(lambda v: f"package={v}", st.sampled_from(["dj*", "flask", "*e*"])),
        st.builds(lambda v: f"exclude-id={v}", st.sampled_from(["A-*", "B-1"])),
    ),
    max_size=4,
)


one_clause_per_key = st.fixed_dictionaries(
    {},
    optional={
        "ecosystem": st.sets(ecosystems, min_size=1, max_size=3).map(lambda v: ",".join(sorted(v))),
        "kind": st.sampled_from([k.value for k in Kind]),
        "package": st.sampled_from(["dj*", "flask", "*e*"]),
        "id": st.sampled_from(["A-*", "*-1"]),
        "exclude-id": st.sampled_from(["A-*", "B-1"]),
    },
)


@settings(max_examples=300)
@given(records, one_clause_per_key)
def test_keys_are_anded(r: LedgerRecord, chosen: dict[str, str]) -> None:
    args = [f"{key}={value}" for key, value in chosen.items()]
    assert parse_selectors(args).matches(r) == all(parse_selectors([a]).matches(r) for a in args)


@settings(max_examples=300)
@given(records, st.lists(ecosystems, min_size=1, max_size=4))
def test_values_of_one_key_are_ored_and_repetition_equals_commas(r: LedgerRecord, values: list[str]) -> None:
    joined = parse_selectors([f"ecosystem={','.join(values)}"])
    repeated = parse_selectors([f"ecosystem={v}" for v in values])
    assert joined == repeated
    assert joined.matches(r) == any(parse_selectors([f"ecosystem={v}"]).matches(r) for v in values)


@settings(max_examples=200)
@given(records, clauses, st.sampled_from(["A-*", "B-1", "GHSA-*"]))
def test_exclusion_always_wins(r: LedgerRecord, args: list[str], excluded: str) -> None:
    selection = parse_selectors([*args, f"exclude-id={excluded}"])
    if parse_selectors([f"id={excluded}"]).matches(r):
        assert not selection.matches(r)


@settings(max_examples=200)
@given(clauses)
def test_normal_form_round_trips(args: list[str]) -> None:
    parsed = parse_selectors(args)
    assert parse_selectors(parsed.to_args()) == parsed
    assert parse_selectors(list(reversed(args))) == parsed


def test_plain_and_glob_patterns_mix_in_one_list() -> None:
    """Plain ids are looked up, globs matched: both case-insensitive, on the id and every alias."""
    excluded = parse_selectors(["exclude-id=ghsa-XXXX,other-1,PYSEC-20??-*,[ab]-9"])
    assert not excluded.matches(record(upstream_id="GHSA-xxxx"))
    assert not excluded.matches(record(upstream_id="x", linkset=Linkset(aliases=("pysec-2021-7",))))
    assert not excluded.matches(record(upstream_id="B-9"))
    assert excluded.matches(record(upstream_id="GHSA-xxxx-1"))
    assert excluded.matches(record(upstream_id="PYSEC-2021"))
    assert excluded.matches(record(upstream_id="c-9"))
