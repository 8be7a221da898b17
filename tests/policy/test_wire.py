"""The joins' spilled values decode to what was encoded, through the compact reducers only."""

from __future__ import annotations

import copyreg
import dataclasses
import json
from typing import Any

from stella.findings import wire
from stella.findings.joins import REVISIONS, record_items
from stella.findings.match import match_partition
from stella.ledger.ingest import to_record
from tests.policy.scenario import advisories, sbom_a, sbom_b, vex_documents
from tests.policy.test_findings_properties import _os_documents


def _values() -> list[Any]:
    docs = [*advisories(), sbom_a(), sbom_b(), *vex_documents().values(), *_os_documents()]
    out: list[Any] = []
    for i, doc in enumerate(docs):
        record = to_record(
            json.dumps(doc).encode(), tenant="acme", source=f"d{i}", ingested_at="2026-06-15T00:00:00Z"
        )
        for side, _key, value in record_items(record):
            decoded = wire.decode(value)
            if side == REVISIONS:  # (rank, [(package key, encoded Affected)])
                out.extend(wire.decode(v) for _k, v in decoded[1])
            else:
                out.append(decoded)
    components = [v for v in out if type(v).__name__ == "Component"]
    affected = [v for v in out if type(v).__name__ == "Affected"]
    return out + match_partition(components, affected)


def _dataclass_types(value: Any, seen: set[type]) -> set[type]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        seen.add(type(value))
        for field in dataclasses.fields(value):
            _dataclass_types(getattr(value, field.name), seen)
    elif isinstance(value, tuple | list):
        for item in value:
            _dataclass_types(item, seen)
    return seen


VALUES = _values()


def test_every_value_round_trips() -> None:
    kinds = {type(v).__name__ for v in VALUES}
    assert {"Affected", "Component", "Statement", "Match"} <= kinds
    for value in VALUES:
        assert wire.decode(wire.encode(value)) == value


def test_every_spilled_dataclass_has_a_compact_reducer() -> None:
    # A new field type without one still pickles, but through dataclasses.fields() per object.
    found: set[type] = set()
    for value in VALUES:
        _dataclass_types(value, found)
    assert {t.__name__ for t in found if t not in copyreg.dispatch_table} == set()
