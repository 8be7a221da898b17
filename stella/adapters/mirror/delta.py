"""The delta between a base mirror and the current selection, per record key.

``changes.jsonl.zst`` lists every change in key order, one canonical JSON line each::

    {"key": [kind, id, modified, documentDigest], "lineDigest": "sha256:…", "op": "add"}
    {"key": [...], "lineDigest": "sha256:…", "oldLineDigest": "sha256:…", "op": "change"}
    {"key": [...], "oldLineDigest": "sha256:…", "op": "remove"}          # a tombstone

Added and changed records travel in full as json:raw lines under ``data/raw/``;
removals travel only as tombstones (key and old content digest), so a delta's size is
proportional to what changed. The old digest lets the importer refuse a delta whose
base is not the state it holds, record by record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from stella.adapters.mirror.records import key_fields
from stella.canonical import dumps_plain
from stella.errors import BundleIntegrityError

__all__ = ["ADD", "CHANGE", "CHANGES_PATH", "REMOVE", "Change", "diff_pairs", "parse_change"]

CHANGES_PATH: Final = "data/delta/changes.jsonl.zst"
ADD: Final = "add"
CHANGE: Final = "change"
REMOVE: Final = "remove"


@dataclass(frozen=True, slots=True, order=True)
class Change:
    key: bytes
    op: str
    digest: str | None = None
    old_digest: str | None = None

    def to_line(self) -> bytes:
        value: dict[str, object] = {"key": key_fields(self.key), "op": self.op}
        if self.digest is not None:
            value["lineDigest"] = self.digest
        if self.old_digest is not None:
            value["oldLineDigest"] = self.old_digest
        return dumps_plain(value)


def diff_pairs(current: Iterable[tuple[bytes, str]], base: Iterable[tuple[bytes, str]]) -> list[Change]:
    """Added, changed and removed keys between two (key, content digest) collections, sorted."""
    now = dict(current)
    before = dict(base)
    changes = [
        Change(key, ADD, digest) if key not in before else Change(key, CHANGE, digest, before[key])
        for key, digest in now.items()
        if before.get(key) != digest
    ]
    changes.extend(Change(key, REMOVE, None, digest) for key, digest in before.items() if key not in now)
    return sorted(changes)


def parse_change(line: bytes, *, where: str) -> Change:
    """One line of ``changes.jsonl.zst``, checked for shape.

    Raises:
        BundleIntegrityError: not a change line.
    """
    try:
        value = json.loads(line)
        op = value["op"]
        fields = value["key"]
        if op not in (ADD, CHANGE, REMOVE) or not isinstance(fields, list) or len(fields) != 4:
            raise ValueError("bad op or key")
        change = Change(
            b"\x00".join(str(f).encode("utf-8") for f in fields),
            op,
            value.get("lineDigest"),
            value.get("oldLineDigest"),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleIntegrityError(f"{where}: malformed change line: {exc}", details={"file": where}) from exc
    if (change.digest is None) != (op == REMOVE) or (change.old_digest is None) != (op == ADD):
        raise BundleIntegrityError(
            f"{where}: change line for {op} has the wrong digests", details={"file": where}
        )
    return change
