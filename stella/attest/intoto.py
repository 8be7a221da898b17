"""``provenance.json``: an in-toto Statement v1 carrying a SLSA Provenance v1 predicate.

Why this shape (BRIEF contract 6, StellaOps ``provenance.json``): the statement binds
the bundle's manifest by digest (``subject``), records what was asked for
(``externalParameters``: profile, selectors, tenant, policy snapshot) and what was read
(``resolvedDependencies``: ledger segments with digests), so a verifier can recompute the
expectations and compare (slsa.dev/spec/v1.0/verifying-artifacts).

Determinism (BRIEF contract 5) overrides SLSA's optional fields: there is no
``startedOn``/``finishedOn`` (wall time) and no runner name (the same bundle must come
out of any runner); ``invocationId`` is included only when the caller passes a
content-derived id. Subjects and dependencies are sorted. The payload is RFC 8785 bytes.

``buildType`` is ours: :data:`BUILD_TYPE` names "an Export Center export run, version 1",
whose external parameters are exactly ``profile``, ``selectors``, ``tenant`` and, for
policy profiles, ``policySnapshotId``.

References: in-toto/attestation ``spec/v1/statement.md``, ``resource_descriptor.md``,
``digest_set.md``; slsa-framework ``spec/v1.0/provenance.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from stella import canonical
from stella.errors import InputError, SignatureError, UsageError

__all__ = [
    "BUILD_TYPE",
    "PAYLOAD_TYPE",
    "SLSA_PROVENANCE_V1",
    "STATEMENT_TYPE",
    "Provenance",
    "Statement",
    "Subject",
    "parse_statement",
    "provenance_statement",
    "statement_bytes",
]

STATEMENT_TYPE: Final = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE_V1: Final = "https://slsa.dev/provenance/v1"
PAYLOAD_TYPE: Final = "application/vnd.in-toto+json"
BUILD_TYPE: Final = "https://stella-ops.org/export-center/buildtypes/export/v1"

_SHA256_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
_HEX = re.compile(r"[0-9a-f]+")


def _sha256_hex(digest: str, what: str) -> str:
    match = _SHA256_DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        raise UsageError(f"{what}: digest {digest!r} is not 'sha256:<64 lowercase hex>'")
    return match.group(1)


def provenance_statement(
    *,
    subjects: Mapping[str, str],
    profile: Any,
    selectors: Any,
    tenant: str,
    policy_snapshot_id: str | None,
    dependencies: Sequence[tuple[str, str]],
    builder_id: str,
    tool_version: str,
    extra_internal: Mapping[str, Any] | None = None,
    invocation_id: str | None = None,
) -> dict[str, Any]:
    """Build the statement; a pure function of its arguments.

    Args:
        subjects: bundle path → ``sha256:<hex>``; must include ``export.json``'s digest.
        profile: the profile identity as the manifest states it (a JSON value).
        selectors: the selector filters as the manifest states them (a JSON value).
        dependencies: ``(uri, "sha256:<hex>")`` of every input read (ledger segments,
            policy snapshot); sorted here.
        extra_internal: more internal parameters (adapter versions, encryption mode);
            may not redefine ``toolVersion``.
        invocation_id: only a content-derived id (e.g. the rerun hash); a run id would
            make reruns differ.

    Raises:
        UsageError: no subjects, malformed digests, duplicate dependency URIs, key
            clashes, or values that have no canonical JSON form.
    """
    if not subjects:
        raise UsageError("a provenance statement needs at least one subject")
    if not builder_id or not tenant or not tool_version:
        raise UsageError("builder_id, tenant and tool_version must be non-empty")
    subject_list = [
        {"name": name, "digest": {"sha256": _sha256_hex(digest, f"subject {name!r}")}}
        for name, digest in sorted(subjects.items())
    ]
    seen: set[str] = set()
    dependency_list = []
    for uri, digest in sorted(dependencies):
        if uri in seen:
            raise UsageError(f"dependency {uri!r} is listed twice")
        seen.add(uri)
        dependency_list.append({"uri": uri, "digest": {"sha256": _sha256_hex(digest, f"dependency {uri!r}")}})

    external: dict[str, Any] = {"profile": profile, "selectors": selectors, "tenant": tenant}
    if policy_snapshot_id is not None:
        external["policySnapshotId"] = policy_snapshot_id
    internal: dict[str, Any] = {"toolVersion": tool_version}
    for key, value in (extra_internal or {}).items():
        if key in internal:
            raise UsageError(f"extra_internal may not redefine {key!r}")
        internal[key] = value
    metadata: dict[str, Any] = {} if invocation_id is None else {"invocationId": invocation_id}

    statement: dict[str, Any] = {
        "_type": STATEMENT_TYPE,
        "subject": subject_list,
        "predicateType": SLSA_PROVENANCE_V1,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external,
                "internalParameters": internal,
                "resolvedDependencies": dependency_list,
            },
            "runDetails": {"builder": {"id": builder_id}, "metadata": metadata},
        },
    }
    statement_bytes(statement)  # fail here, not at signing time, on values JCS cannot express
    return statement


def statement_bytes(statement: Mapping[str, Any]) -> bytes:
    """The RFC 8785 bytes that go into the DSSE payload."""
    try:
        return canonical.dumps(statement)
    except InputError as exc:
        raise UsageError(f"provenance statement has no canonical JSON form: {exc.message}") from exc


@dataclass(frozen=True, slots=True)
class Subject:
    """One attested artifact; ``digests`` maps algorithm → lowercase hex."""

    name: str
    digests: Mapping[str, str]

    @property
    def sha256(self) -> str | None:
        """The digest in manifest notation, ``sha256:<hex>``, if present."""
        value = self.digests.get("sha256")
        return None if value is None else f"sha256:{value}"


@dataclass(frozen=True, slots=True)
class Provenance:
    """The SLSA Provenance v1 fields a verifier compares against its expectations."""

    build_type: str
    external_parameters: Mapping[str, Any]
    internal_parameters: Mapping[str, Any]
    resolved_dependencies: tuple[tuple[str, str], ...]
    builder_id: str
    invocation_id: str | None


@dataclass(frozen=True, slots=True)
class Statement:
    """A validated in-toto Statement v1. Unknown fields are ignored, as the spec requires."""

    subjects: tuple[Subject, ...]
    predicate_type: str
    predicate: Mapping[str, Any]

    def subjects_matching(self, digest: str) -> tuple[Subject, ...]:
        """Subjects whose sha256 equals ``digest`` (validation.md step 4: match by digest only)."""
        return tuple(subject for subject in self.subjects if subject.sha256 == digest)

    def provenance(self) -> Provenance:
        """The predicate as SLSA Provenance v1.

        Raises:
            SignatureError: another predicate type, or required fields missing.
        """
        if self.predicate_type != SLSA_PROVENANCE_V1:
            raise SignatureError(f"predicateType is {self.predicate_type!r}, not {SLSA_PROVENANCE_V1}")
        build = _obj(self.predicate.get("buildDefinition"), "predicate.buildDefinition")
        run = _obj(self.predicate.get("runDetails"), "predicate.runDetails")
        builder = _obj(run.get("builder"), "predicate.runDetails.builder")
        metadata = _obj(run.get("metadata", {}), "predicate.runDetails.metadata")
        dependencies = []
        for index, item in enumerate(_list(build.get("resolvedDependencies", []), "resolvedDependencies")):
            where = f"resolvedDependencies[{index}]"
            entry = _obj(item, where)
            uri = _str(entry.get("uri"), f"{where}.uri")
            digests = _digest_set(entry.get("digest"), f"{where}.digest")
            if "sha256" not in digests:
                raise SignatureError(f"malformed provenance: {where} has no sha256 digest")
            dependencies.append((uri, f"sha256:{digests['sha256']}"))
        invocation = metadata.get("invocationId")
        return Provenance(
            build_type=_str(build.get("buildType"), "buildDefinition.buildType"),
            external_parameters=_obj(build.get("externalParameters"), "buildDefinition.externalParameters"),
            internal_parameters=_obj(
                build.get("internalParameters", {}), "buildDefinition.internalParameters"
            ),
            resolved_dependencies=tuple(dependencies),
            builder_id=_str(builder.get("id"), "runDetails.builder.id"),
            invocation_id=None if invocation is None else _str(invocation, "metadata.invocationId"),
        )


def _obj(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise SignatureError(f"malformed in-toto statement: {where} is not an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise SignatureError(f"malformed in-toto statement: {where} is not a list")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise SignatureError(f"malformed in-toto statement: {where} is not a non-empty string")
    return value


def _digest_set(value: Any, where: str) -> dict[str, str]:
    digests = _obj(value, where)
    if not digests:
        raise SignatureError(f"malformed in-toto statement: {where} is empty")
    for algorithm, hex_value in digests.items():
        if not isinstance(hex_value, str) or not _HEX.fullmatch(hex_value):
            raise SignatureError(f"malformed in-toto statement: {where}.{algorithm} is not lowercase hex")
    if "sha256" in digests and len(digests["sha256"]) != 64:
        raise SignatureError(f"malformed in-toto statement: {where}.sha256 is not 64 hex digits")
    return dict(digests)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers that disagree on which duplicate wins would see different statements.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise SignatureError(f"malformed in-toto statement: duplicate key {key!r}")
        result[key] = value
    return result


def parse_statement(data: bytes) -> Statement:
    """Validate the bytes a DSSE envelope verified (validation.md steps 3-4 prerequisites).

    Raises:
        SignatureError: not JSON, not a Statement v1, or subjects malformed.
    """
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SignatureError(f"malformed in-toto statement: not UTF-8 JSON: {exc}") from exc
    top = _obj(value, "statement")
    if top.get("_type") != STATEMENT_TYPE:
        raise SignatureError(f"in-toto statement _type is {top.get('_type')!r}, expected {STATEMENT_TYPE}")
    subjects = []
    for index, item in enumerate(_list(top.get("subject"), "subject")):
        entry = _obj(item, f"subject[{index}]")
        name = entry.get("name", "")
        if not isinstance(name, str):
            raise SignatureError(f"malformed in-toto statement: subject[{index}].name is not a string")
        subjects.append(
            Subject(name=name, digests=_digest_set(entry.get("digest"), f"subject[{index}].digest"))
        )
    if not subjects:
        raise SignatureError("malformed in-toto statement: subject is empty")
    predicate = top.get("predicate", {})
    return Statement(
        subjects=tuple(subjects),
        predicate_type=_str(top.get("predicateType"), "predicateType"),
        predicate=_obj(predicate, "predicate"),
    )
