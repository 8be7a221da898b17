"""Format recognition over every real document in ../shared/data, and malformed cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from stella.canonical import canonical_document, sha256_digest
from stella.documents import recognise
from stella.documents.interface import normalize_time
from stella.errors import InputError
from stella.model import DocFormat, Kind

# Expected (kind, format) per folder, from the data's own README.
FOLDERS = {
    "sboms/cyclonedx": (Kind.SBOM, DocFormat.CYCLONEDX),
    "sboms/spdx": (Kind.SBOM, DocFormat.SPDX),
    "vex/openvex": (Kind.VEX, DocFormat.OPENVEX),
    "vex/csaf-vex": (Kind.VEX, DocFormat.CSAF),
    "vex/cyclonedx-vex": (Kind.VEX, DocFormat.CYCLONEDX_VEX),
}
# Documents whose content says something other than their folder does.
EXCEPTIONS = {
    "oasis-example-rhsa-2021_5217.json": (Kind.ADVISORY, DocFormat.CSAF),  # csaf_security_advisory
    "bom-examples-vex-target-bom.json": (Kind.SBOM, DocFormat.CYCLONEDX),  # the BOM a VEX points at
}


def test_every_shared_document_is_recognised(shared_data: Path) -> None:
    seen = 0
    for folder, expected in FOLDERS.items():
        for path in sorted((shared_data / folder).glob("*.json")):
            raw = path.read_bytes()
            value, _ = canonical_document(raw)
            parsed = recognise(value, digest=sha256_digest(raw))
            assert (parsed.kind, parsed.format) == EXCEPTIONS.get(path.name, expected), path.name
            assert parsed.upstream_id
            seen += 1
    assert seen == 55  # 12 SBOMs + 43 VEX documents


def test_every_shared_advisory_is_osv(shared_data: Path) -> None:
    count = 0
    for path in sorted((shared_data / "advisories").glob("*.jsonl.zst")):
        with path.open("rb") as handle:
            lines = zstandard.ZstdDecompressor().stream_reader(handle).read().splitlines()
        for line in lines:
            value, _ = canonical_document(line)
            parsed = recognise(value, digest=sha256_digest(line))
            assert parsed.kind is Kind.ADVISORY and parsed.format is DocFormat.OSV
            assert parsed.upstream_id == value["id"]
            count += 1
    assert count == 9689  # the data README's total


def test_linksets_hold_what_selectors_need(shared_data: Path) -> None:
    raw = (shared_data / "sboms/cyclonedx/dropwizard-1.3.15.cdx.json").read_bytes()
    parsed = recognise(json.loads(raw), digest=sha256_digest(raw))
    assert parsed.linkset.sbom_subject == "pkg:maven/io.dropwizard/dropwizard-parent@1.3.15"
    assert parsed.linkset.ecosystems == ("Maven",)
    assert len(parsed.linkset.purls) == 167
    raw = (shared_data / "vex/openvex/trivy.openvex.json").read_bytes()
    parsed = recognise(json.loads(raw), digest=sha256_digest(raw))
    assert any(p.startswith("pkg:golang/") for p in parsed.linkset.vex_products)
    assert {"CVE-2024-21626", "GO-2024-2491"} <= set(parsed.linkset.aliases)


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ({"id": "X-1", "modified": "yesterday", "affected": []}, "not an RFC 3339"),
        ({"id": "", "modified": "2020-01-01T00:00:00Z", "affected": []}, "'id' is missing"),
        (
            {"id": "X-1", "modified": "2020-01-01T00:00:00Z", "affected": {"a": 1}},
            "'affected' must be a list",
        ),
        ({"bomFormat": "CycloneDX"}, "specVersion"),
        ({"spdxVersion": "SPDX-3.0", "documentNamespace": "x"}, "SPDX 2.x"),
        ({"@context": "https://openvex.dev/ns/v0.2.0", "@id": "x"}, "statements"),
        ({"document": {"csaf_version": "2.0", "category": "csaf_base"}}, "not supported"),
        ({"hello": "world"}, "unrecognised document format"),
        ([1, 2], "not an object"),
    ],
)
def test_malformed_documents_say_what_is_wrong(document: object, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        recognise(document, digest="sha256:" + "0" * 64)


@settings(max_examples=400)
@given(
    st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?\Z", fullmatch=True)
    | st.builds(
        lambda moment, spec, extra: moment.isoformat(timespec=spec) + extra,
        st.datetimes(),
        st.sampled_from(["seconds", "milliseconds", "microseconds"]),
        st.sampled_from(["", "0", "999"]),
    )
)
def test_utc_timestamps_read_as_the_general_parser_reads_them(stem: str) -> None:
    # "...Z" takes the one-match path; "+00:00" the general one: same answer or same error
    def outcome(text: str) -> str:
        try:
            return normalize_time(text, field="t") or ""
        except InputError:
            return "refused"

    assert outcome(stem + "Z") == outcome(stem + "+00:00")


def test_non_ascii_digits_are_not_a_timestamp() -> None:
    with pytest.raises(InputError, match="RFC 3339"):
        normalize_time("\u0662\u0660\u0662\u0665-01-01T00:00:00Z", field="t")


def test_duplicate_keys_are_named_whatever_the_nesting() -> None:
    with pytest.raises(InputError, match="duplicate key 'b'"):
        canonical_document(b'{"a": {"c": 1, "b": 2, "b": 3}}')
