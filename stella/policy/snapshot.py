"""Policy snapshots: the canonical form of a validated policy, named by its digest, stored per tenant.

A snapshot is what an export pins: the same policy text (whatever its YAML spelling,
comments or key order) always gives the same canonical JSON and therefore the same id,
and a snapshot never changes once stored (it is written under its own digest, so a
second publish of the same policy is a no-op). Layout in the ledger area::

    tenants/<tenant>/policy/snapshots/<hex>.json    RFC 8785 bytes of the snapshot

The snapshot records the policy only, never who published it or when: those would
make two publishes of one policy differ, and they belong to the caller's audit log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from stella import storage
from stella.canonical import canonical_document, dumps, sha256_digest
from stella.errors import InputError, PolicySnapshotNotFoundError, PolicySnapshotRequiredError, UsageError
from stella.guards.ids import check_id
from stella.model import validate_tenant
from stella.policy.language import Policy, parse_policy

__all__ = [
    "SNAPSHOT_ID",
    "PolicySnapshot",
    "SnapshotStore",
    "canonical_snapshot",
    "parse_snapshot_id",
    "snapshot_from_bytes",
]

SNAPSHOT_ID = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class PolicySnapshot:
    id: str  # sha256:<hex> of ``canonical``
    canonical: bytes
    policy: Policy


def canonical_snapshot(policy: Policy) -> PolicySnapshot:
    """Defaults made explicit, times normalized, then RFC 8785: the snapshot and its id."""
    doc = policy.document
    value: dict[str, Any] = {
        "apiVersion": doc["apiVersion"],
        "kind": doc["kind"],
        "metadata": dict(doc["metadata"]),
        "defaultVerdict": policy.default_verdict,
        "rules": [{**rule, "when": dict(rule.get("when", {}))} for rule in doc["rules"]],
        "exceptions": [
            {**item, "expires": typed.expires, "verdict": typed.verdict}
            for item, typed in zip(doc.get("exceptions", []), policy.exceptions, strict=True)
        ],
    }
    canonical = dumps(value)
    return PolicySnapshot(sha256_digest(canonical), canonical, policy)


def snapshot_from_bytes(data: bytes, *, source: str) -> PolicySnapshot:
    """Re-validate stored bytes (a snapshot is checked like any input when read back)."""
    try:
        value, canonical = canonical_document(data)
    except (ValueError, InputError) as exc:
        raise InputError(f"{source}: stored policy snapshot is not JSON: {exc}") from exc
    # JSON is YAML: the same validator applies, without an expiry check (an export may
    # legitimately be re-run after an exception expired; evaluation handles that).
    policy = parse_policy(canonical.decode("utf-8"), source=source)
    snapshot = canonical_snapshot(policy)
    if snapshot.canonical != canonical or value is None:
        raise InputError(f"{source}: stored policy snapshot is not in canonical form")
    return snapshot


def parse_snapshot_id(value: str | None) -> str:
    """The ``policy-snapshot`` option: required, ``sha256:<64 hex>``."""
    if not value:
        raise PolicySnapshotRequiredError(
            "profile json:policy needs --option policy-snapshot=<id> (see `stella policy list`)",
            details={"option": "policy-snapshot"},
        )
    if SNAPSHOT_ID.fullmatch(value) is None:
        raise UsageError(
            f"policy-snapshot {value!r} is not a snapshot id (sha256:<64 lowercase hex>)",
            details={"option": "policy-snapshot", "value": value},
        )
    return value


class SnapshotStore:
    """Snapshots of every tenant under one ledger root (local folder or ``gs://``)."""

    def __init__(self, root: str) -> None:
        self.root = root

    def _dir(self, tenant: str) -> str:
        return storage.join(self.root, "tenants", validate_tenant(tenant), "policy", "snapshots")

    def _path(self, tenant: str, snapshot_id: str) -> str:
        name = check_id(parse_snapshot_id(snapshot_id).split(":", 1)[1], "policy snapshot id")
        return storage.join(self._dir(tenant), name + ".json")

    def publish(self, tenant: str, snapshot: PolicySnapshot) -> tuple[str, bool]:
        """Store ``snapshot``; returns (path, created). Written beside and renamed into place."""
        path = self._path(tenant, snapshot.id)
        if storage.exists(path):
            return path, False
        temp = f"{path}.part"
        with storage.open_write(temp) as handle:
            handle.write(snapshot.canonical)
        storage.rename(temp, path)
        return path, True

    def load(self, tenant: str, snapshot_id: str) -> PolicySnapshot:
        path = self._path(tenant, snapshot_id)
        if not storage.exists(path):
            raise PolicySnapshotNotFoundError(
                f"policy snapshot {snapshot_id} is not published for tenant {tenant}",
                details={"tenant": tenant, "policySnapshot": snapshot_id},
            )
        with storage.open_read(path) as handle:
            data = handle.read()
        snapshot = snapshot_from_bytes(data, source=path)
        if snapshot.id != snapshot_id:
            raise InputError(f"{path}: content digest {snapshot.id} does not match its name")
        return snapshot

    def list(self, tenant: str) -> list[PolicySnapshot]:
        return [
            self.load(tenant, "sha256:" + path.rsplit("/", 1)[-1].removesuffix(".json"))
            for path in storage.list_files(self._dir(tenant), ".json")
            if SNAPSHOT_ID.fullmatch("sha256:" + path.rsplit("/", 1)[-1].removesuffix(".json"))
        ]
