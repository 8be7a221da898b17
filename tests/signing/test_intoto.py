"""in-toto Statement v1 + SLSA Provenance v1: shape, determinism, parsing, end to end."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from stella.attest.dsse import sign_envelope, verify_envelope
from stella.attest.intoto import (
    BUILD_TYPE,
    PAYLOAD_TYPE,
    SLSA_PROVENANCE_V1,
    STATEMENT_TYPE,
    parse_statement,
    provenance_statement,
    statement_bytes,
)
from stella.errors import SignatureError, UsageError
from stella.signers.interface import load_verifier
from stella.signers.registry import generate_key, load_signer

MANIFEST = b'{"schema":"stella.export/v1"}'
MANIFEST_DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
SEGMENT_A = "sha256:" + "a" * 64
SEGMENT_B = "sha256:" + "b" * 64


def _statement(**overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "subjects": {"export.json": MANIFEST_DIGEST, "data/advisories-0000.jsonl.zst": SEGMENT_A},
        "profile": {"kind": "json", "variant": "raw", "name": "json:raw", "revision": 1},
        "selectors": {"kinds": ["advisory"], "since": "2024-01-01T00:00:00Z"},
        "tenant": "acme",
        "policy_snapshot_id": None,
        "dependencies": [
            ("ledger://acme/segments/0002.avro", SEGMENT_B),
            ("ledger://acme/segments/0001.avro", SEGMENT_A),
        ],
        "builder_id": "https://stella-ops.org/export-center/builder/v1",
        "tool_version": "0.1.0",
        "extra_internal": {"adapters": {"jsonraw": "1"}},
    }
    arguments.update(overrides)
    return provenance_statement(**arguments)


def test_statement_shape_follows_the_specs() -> None:
    statement = _statement()
    assert statement["_type"] == STATEMENT_TYPE == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == SLSA_PROVENANCE_V1 == "https://slsa.dev/provenance/v1"
    assert statement["subject"] == [
        {"name": "data/advisories-0000.jsonl.zst", "digest": {"sha256": "a" * 64}},
        {"name": "export.json", "digest": {"sha256": MANIFEST_DIGEST.removeprefix("sha256:")}},
    ]
    build = statement["predicate"]["buildDefinition"]
    assert build["buildType"] == BUILD_TYPE
    assert build["externalParameters"] == {
        "profile": {"kind": "json", "variant": "raw", "name": "json:raw", "revision": 1},
        "selectors": {"kinds": ["advisory"], "since": "2024-01-01T00:00:00Z"},
        "tenant": "acme",
    }
    assert build["internalParameters"] == {"toolVersion": "0.1.0", "adapters": {"jsonraw": "1"}}
    assert [dep["uri"] for dep in build["resolvedDependencies"]] == [
        "ledger://acme/segments/0001.avro",
        "ledger://acme/segments/0002.avro",
    ]
    assert statement["predicate"]["runDetails"] == {
        "builder": {"id": "https://stella-ops.org/export-center/builder/v1"},
        "metadata": {},
    }
    text = statement_bytes(statement).decode()
    for wall_clock_field in ("startedOn", "finishedOn", "invocationId"):
        assert wall_clock_field not in text


def test_bytes_do_not_depend_on_input_order() -> None:
    first = _statement()
    second = _statement(
        subjects=dict(reversed(list(_statement_subjects().items()))),
        dependencies=list(reversed(_dependencies())),
    )
    assert statement_bytes(first) == statement_bytes(second)


def _statement_subjects() -> dict[str, str]:
    return {"export.json": MANIFEST_DIGEST, "data/advisories-0000.jsonl.zst": SEGMENT_A}


def _dependencies() -> list[tuple[str, str]]:
    return [("ledger://acme/segments/0002.avro", SEGMENT_B), ("ledger://acme/segments/0001.avro", SEGMENT_A)]


def test_policy_snapshot_and_invocation_id_when_given() -> None:
    statement = _statement(policy_snapshot_id="policy-snap-7", invocation_id="rerun:" + "c" * 64)
    assert (
        statement["predicate"]["buildDefinition"]["externalParameters"]["policySnapshotId"] == "policy-snap-7"
    )
    assert statement["predicate"]["runDetails"]["metadata"] == {"invocationId": "rerun:" + "c" * 64}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"subjects": {}}, "at least one subject"),
        ({"subjects": {"export.json": "md5:abc"}}, "sha256:<64 lowercase hex>"),
        ({"subjects": {"export.json": "sha256:" + "A" * 64}}, "lowercase"),
        ({"dependencies": [("u", SEGMENT_A), ("u", SEGMENT_B)]}, "twice"),
        ({"extra_internal": {"toolVersion": "9"}}, "redefine"),
        ({"selectors": {"x": float("nan")}}, "canonical JSON"),
        ({"tenant": ""}, "non-empty"),
    ],
)
def test_bad_inputs_are_usage_errors(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        _statement(**overrides)


def test_parse_round_trip_and_digest_matching() -> None:
    statement = parse_statement(statement_bytes(_statement(invocation_id="rerun:1")))
    assert statement.predicate_type == SLSA_PROVENANCE_V1
    assert [subject.name for subject in statement.subjects_matching(MANIFEST_DIGEST)] == ["export.json"]
    assert statement.subjects_matching("sha256:" + "f" * 64) == ()
    provenance = statement.provenance()
    assert provenance.build_type == BUILD_TYPE
    assert provenance.external_parameters["tenant"] == "acme"
    assert provenance.resolved_dependencies == (
        ("ledger://acme/segments/0001.avro", SEGMENT_A),
        ("ledger://acme/segments/0002.avro", SEGMENT_B),
    )
    assert provenance.builder_id.endswith("/builder/v1")
    assert provenance.invocation_id == "rerun:1"


def test_parse_ignores_unknown_fields() -> None:
    value = _statement()
    value["futureField"] = {"x": 1}
    value["subject"][0]["annotations"] = {"note": "ok"}
    value["subject"][0]["digest"]["sha512"] = "ab" * 64
    assert len(parse_statement(json.dumps(value).encode()).subjects) == 2


def _bad(change: Any) -> bytes:
    value = _statement()
    change(value)
    return json.dumps(value).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff", "UTF-8"),
        (b"[]", "not an object"),
        (_bad(lambda v: v.update(_type="https://in-toto.io/Statement/v0.1")), "_type"),
        (_bad(lambda v: v.update(subject=[])), "subject is empty"),
        (_bad(lambda v: v.pop("subject")), "subject is not a list"),
        (_bad(lambda v: v["subject"][0].update(digest={})), "empty"),
        (_bad(lambda v: v["subject"][0].update(digest={"sha256": "XYZ"})), "lowercase hex"),
        (_bad(lambda v: v["subject"][0].update(digest={"sha256": "ab"})), "64 hex"),
        (_bad(lambda v: v["subject"][0].update(name=5)), "name"),
        (_bad(lambda v: v.update(predicateType="")), "predicateType"),
        (b'{"_type":"https://in-toto.io/Statement/v1","_type":"x"}', "duplicate key"),
    ],
)
def test_parse_refuses_malformed_statements(data: bytes, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        parse_statement(data)


def test_provenance_refuses_other_predicates() -> None:
    statement = parse_statement(_bad(lambda v: v.update(predicateType="https://example.com/other")))
    with pytest.raises(SignatureError, match="predicateType"):
        statement.provenance()
    broken = parse_statement(_bad(lambda v: v["predicate"]["runDetails"].pop("builder")))
    with pytest.raises(SignatureError, match="builder"):
        broken.provenance()


def test_signed_provenance_binds_the_manifest(tmp_path: Path) -> None:
    generate_key("ed25519", tmp_path / "k", tmp_path / "k.pub", password=None)
    signer = load_signer(str(tmp_path / "k"), environ={})
    envelope = sign_envelope(statement_bytes(_statement()), PAYLOAD_TYPE, signers=[signer])
    payload = verify_envelope(
        envelope, verifiers=[load_verifier((tmp_path / "k.pub").read_bytes())], payload_type=PAYLOAD_TYPE
    )
    statement = parse_statement(payload)
    assert statement.subjects_matching("sha256:" + hashlib.sha256(MANIFEST).hexdigest())
