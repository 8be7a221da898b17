"""``stella mirror import``: verify everything, check freshness and order, then switch state atomically.

Order of work (research §1, §5):

1. **Verify before touching state.** The bundle is streamed (never extracted) through
   :func:`stella.bundle.verify.verify_bundle` with a trusted key or trust root: every
   signature, digest, size and record count, under member-count, size and
   compression-ratio caps. An unsigned bundle is refused.
2. **Policy**, against a clock read once (``now``): the bundle is a mirror export of
   the mirror's tenant and name (``ERR_EXPORT_MIRROR_SCOPE``), not expired (freeze,
   ``ERR_EXPORT_MIRROR_EXPIRED``), newer than the state and not already applied
   (rollback and replay, ``ERR_EXPORT_MIRROR_ROLLBACK``), and a delta's base is exactly
   the current state (skipped, out-of-order or foreign deltas, ``ERR_EXPORT_MIRROR_CHAIN``).
3. **Build beside, switch by rename** (:mod:`stella.mirror.state`). Files listed in the
   verified manifest are unpacked into a staging folder and hashed again as they are
   written; a delta's tombstones and changed records must name the digests the state
   holds. The new state hard-links the shards the delta does not touch and rewrites
   the others (:mod:`stella.mirror.patch`; a group whose shard count changes is
   re-sharded alone, :mod:`stella.mirror.reshard`; a whole rebuild,
   :mod:`stella.mirror.rebuild`, only if the old state does not match its record
   index), and it must have the record set and counts the exporter signed. Only then
   does ``current`` move.

``dry_run`` stops after step 2 and reports what would be added, changed and removed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import pyarrow.parquet as pq

from stella.adapters.mirror.delta import ADD, CHANGES_PATH, REMOVE, Change, diff_pairs, parse_change
from stella.adapters.mirror.items import items_of_line
from stella.adapters.mirror.records import RecordSet, key_of_envelope, line_digest
from stella.bundle.encrypt import ciphertext_files
from stella.bundle.manifest import ContentEntry
from stella.bundle.paths import DATA_DIR, MANIFEST, PROVENANCE
from stella.bundle.trust import TrustPolicy
from stella.bundle.verify import failure, iter_members, verify_bundle
from stella.canonical import sha256_digest
from stella.encryption.interface import Identity
from stella.errors import (
    BundleIntegrityError,
    MirrorChainError,
    MirrorExpiredError,
    MirrorRollbackError,
    MirrorScopeError,
    NotFoundError,
    SignatureError,
    UsageError,
)
from stella.guards.streams import iter_lines, open_decompressed
from stella.mirror.patch import patch_state
from stella.mirror.rebuild import write_sorted
from stella.mirror.state import (
    STATE_SCHEMA,
    MirrorState,
    applied_log,
    current_state,
    lock_mirror,
    new_staging,
    switch_state,
    write_state_files,
)
from stella.model import Kind
from stella.storage import HashingWriter

__all__ = ["ImportLimits", "ImportOutcome", "import_bundle", "record_index_pairs", "state_lines"]

_CHUNK: Final = 1 << 20
_RAW: Final = f"{DATA_DIR}/raw/"
_INDEXES: Final = f"{DATA_DIR}/indexes/"


@dataclass(frozen=True)
class ImportLimits:
    """Caps enforced while streaming (research §5): members, bytes, and the expansion of the archive."""

    max_members: int = 100_000
    max_total_bytes: int = 256 << 30
    max_ratio: int = 100

    def caps(self, bundle: Path) -> dict[str, int]:
        total = self.max_total_bytes
        if bundle.is_file():
            total = min(total, self.max_ratio * max(bundle.stat().st_size, 1 << 16))
        return {"max_members": self.max_members, "max_total_bytes": total, "max_member_bytes": total}


@dataclass
class ImportOutcome:
    mirror: Path
    export_id: str
    mode: str
    sequence: int
    dry_run: bool
    added: int = 0
    changed: int = 0
    removed: int = 0
    state: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "mirror": str(self.mirror),
            "exportId": self.export_id,
            "mode": self.mode,
            "sequence": self.sequence,
            "dryRun": self.dry_run,
            "added": self.added,
            "changed": self.changed,
            "removed": self.removed,
        }


def import_bundle(
    bundle: Path,
    root: Path,
    *,
    trust: TrustPolicy,
    now: datetime,
    identities: Sequence[Identity] = (),
    dry_run: bool = False,
    limits: ImportLimits = ImportLimits(),
) -> ImportOutcome:
    """Verify ``bundle`` and apply it to the mirror at ``root`` (see the module docstring).

    Raises:
        StellaError: codes 3/4/5 (verification), 6 (no bundle, no identity), 15-18 (policy);
            the mirror is unchanged whenever anything is raised.
    """
    if not bundle.exists():
        raise NotFoundError(f"bundle {bundle} does not exist", details={"bundle": str(bundle)})
    with lock_mirror(root):
        work = new_staging(root)
        try:
            return _import_locked(bundle, root, work, trust, now, identities, dry_run, limits)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _import_locked(
    bundle: Path,
    root: Path,
    work: Path,
    trust: TrustPolicy,
    now: datetime,
    identities: Sequence[Identity],
    dry_run: bool,
    limits: ImportLimits,
) -> ImportOutcome:
    caps = limits.caps(bundle)
    checked = verify_bundle(bundle, trust=trust, caps=caps)
    if not checked.report.ok:
        raise failure(checked.report)
    if checked.report.signature.get("status") != "trusted":
        raise SignatureError(
            f"{bundle} is not signed by a trusted key; a mirror imports only signed bundles",
            details={"bundle": str(bundle), "signature": checked.report.signature},
        )
    assert checked.manifest is not None
    manifest, manifest_bytes = checked.manifest, checked.control[MANIFEST]
    state = current_state(root)
    mode = _check_policy(manifest, sha256_digest(manifest_bytes), state, now)
    source = bundle
    if ciphertext_files(json.loads(checked.control[PROVENANCE])):
        if not identities:
            raise UsageError(f"{bundle} is encrypted: pass --identity with a key it was encrypted to")
        from stella.bundle.decrypt import decrypt_bundle

        source = decrypt_bundle(bundle, identities, work / "decrypted", trust=trust).path
        caps = {}
    mirror = manifest["mirror"]
    outcome = ImportOutcome(root, str(manifest["exportId"]), mode, int(mirror["sequence"]), dry_run)
    entries = [ContentEntry.from_json(c) for c in manifest["contents"]]
    _check_layout(entries, mode)
    if mode == "delta":
        delta = manifest["delta"]
        outcome.added, outcome.changed, outcome.removed = delta["added"], delta["changed"], delta["removed"]
    elif dry_run:
        incoming = work / "incoming"
        _unpack(source, [e for e in entries if e.path.startswith(_INDEXES + "records/")], incoming, caps)
        ops = diff_pairs(record_index_pairs(incoming), record_index_pairs(state.path) if state else [])
        outcome.added = sum(1 for c in ops if c.op == ADD)
        outcome.removed = sum(1 for c in ops if c.op == REMOVE)
        outcome.changed = len(ops) - outcome.added - outcome.removed
    else:
        outcome.added = int(mirror["recordSet"]["records"])
    if dry_run:
        return outcome
    staging = work / "state"
    if mode == "full":
        _unpack(source, entries, staging, caps)
        contents = entries
    else:
        assert state is not None
        incoming = work / "incoming"
        _unpack(source, entries, incoming, caps)
        contents = _apply_delta(state, manifest, incoming, staging, work / "runs")
    staging.mkdir(exist_ok=True)  # an empty selection is a valid (empty) mirror
    _check_result(staging, manifest, contents)
    value = {
        "schema": STATE_SCHEMA,
        "tenant": manifest["tenant"],
        "name": mirror["name"],
        "sequence": int(mirror["sequence"]),
        "exportId": manifest["exportId"],
        "manifestDigest": sha256_digest(manifest_bytes),
        "mode": mode,
        "generatedAt": manifest["generatedAt"],
        "expires": mirror["expires"],
        "recordSet": mirror["recordSet"],
        "counts": manifest["counts"],
        "recordsPerShard": manifest.get("options", {}).get("recordsPerShard"),
        "contents": [c.to_json() for c in sorted(contents)],
    }
    log_entry = {
        "exportId": manifest["exportId"],
        "manifestDigest": value["manifestDigest"],
        "mode": mode,
        "sequence": value["sequence"],
        "generatedAt": manifest["generatedAt"],
    }
    write_state_files(staging, value, manifest_bytes, state, log_entry)
    switch_state(root, staging, str(manifest["exportId"]))
    outcome.state = value
    return outcome


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _check_policy(
    manifest: Mapping[str, Any], manifest_digest: str, state: MirrorState | None, now: datetime
) -> str:
    """The bundle's mode, if the mirror may take it; else the refusal."""
    mirror = manifest.get("mirror")
    profile = manifest.get("profile", {})
    if profile.get("kind") != "mirror" or not isinstance(mirror, dict):
        raise UsageError(f"{manifest.get('exportId')} is a {profile.get('name')} export, not a mirror bundle")
    mode, sequence, export_id = (
        str(profile.get("variant")),
        int(mirror["sequence"]),
        str(manifest["exportId"]),
    )
    if state is not None and (state.tenant, state.name) != (manifest["tenant"], mirror["name"]):
        raise MirrorScopeError(
            f"{export_id} is mirror {mirror['name']!r} of tenant {manifest['tenant']!r}; this mirror holds "
            f"{state.name!r} of tenant {state.tenant!r}",
            details={"tenant": manifest["tenant"], "name": mirror["name"]},
        )
    if now > _instant(str(mirror["expires"])):
        raise MirrorExpiredError(
            f"{export_id} expired at {mirror['expires']} (now {now.isoformat()}); ask for a fresh export",
            details={"expires": mirror["expires"], "now": now.isoformat()},
        )
    if state is None:
        if mode != "full":
            raise MirrorChainError(
                f"{export_id} is a delta and the mirror is empty: import a mirror:full first",
                details={"reason": "empty"},
            )
        return mode
    if any(entry.get("exportId") == export_id for entry in applied_log(state)):
        raise MirrorRollbackError(
            f"{export_id} was already applied to this mirror (replay)",
            details={"reason": "replay", "exportId": export_id},
        )
    if sequence <= state.sequence:
        raise MirrorRollbackError(
            f"{export_id} has sequence {sequence}, not above the mirror's {state.sequence} (rollback)",
            details={"reason": "rollback", "sequence": sequence, "current": state.sequence},
        )
    if mode == "delta":
        delta = manifest["delta"]
        if (delta["baseExportId"], delta["baseManifestDigest"]) != (state.export_id, state.manifest_digest):
            skipped = int(delta["baseSequence"]) > state.sequence
            raise MirrorChainError(
                f"{export_id} is a delta against {delta['baseExportId']} (sequence {delta['baseSequence']}); "
                f"the mirror holds {state.export_id} (sequence {state.sequence})"
                + ("; import the deltas in between first" if skipped else ""),
                details={"reason": "skipped" if skipped else "base-mismatch", "base": delta["baseExportId"]},
            )
    return mode


def _check_layout(entries: Sequence[ContentEntry], mode: str) -> None:
    """Only the mirror layout enters a state: raw shards, indexes (full), the change list (delta)."""
    allowed = (_RAW, _INDEXES) if mode == "full" else (_RAW, CHANGES_PATH)
    for entry in entries:
        if not entry.path.startswith(allowed):
            raise BundleIntegrityError(
                f"{entry.path} is not part of a mirror:{mode} bundle's layout", details={"file": entry.path}
            )
    if mode == "delta" and CHANGES_PATH not in {e.path for e in entries}:
        raise BundleIntegrityError(
            f"a mirror:delta bundle without {CHANGES_PATH}", details={"file": CHANGES_PATH}
        )


def _unpack(source: Path, entries: Sequence[ContentEntry], into: Path, caps: Mapping[str, int]) -> None:
    """Write the listed members under ``into``, hashing each again against the verified manifest."""
    wanted = {e.path: e for e in entries}
    seen: set[str] = set()
    for relative, stream in iter_members(source, caps):
        entry = wanted.get(relative)
        if entry is None:
            continue
        target = into / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("xb") as out:
            sink = HashingWriter(out)
            while chunk := stream.read(_CHUNK):
                sink.write(chunk)
                if sink.size > entry.bytes:
                    break
        if (sink.digest, sink.size) != (entry.digest, entry.bytes):
            raise BundleIntegrityError(
                f"{relative} changed between verification and import", details={"file": relative}
            )
        seen.add(relative)
    missing = sorted(set(wanted) - seen)
    if missing:
        raise BundleIntegrityError(
            f"{missing[0]} disappeared after verification", details={"file": missing[0]}
        )


def _lines(path: Path) -> Iterator[bytes]:
    """Lines of a verified ``.jsonl.zst``, decompressed under the shared bounds (ratio, window)."""
    what = path.name
    with open_decompressed(path.open("rb"), "zstd", what=what, error=BundleIntegrityError) as reader:
        for line in iter_lines(reader):
            if line.oversized:
                raise BundleIntegrityError(f"{what}: line {line.number} is over the line limit")
            yield line.data


def state_lines(folder: Path) -> Iterator[tuple[str, bytes]]:
    """(file, line) of every record line under ``folder/data/raw``, file by file."""
    raw = folder / _RAW
    for path in sorted(raw.rglob("*.jsonl.zst")) if raw.is_dir() else []:
        relative = path.relative_to(folder).as_posix()
        for line in _lines(path):
            yield relative, line


def record_index_pairs(folder: Path) -> Iterator[tuple[bytes, str]]:
    """(record key, content digest) from a state's or bundle's record index."""
    index = folder / _INDEXES / "records"
    for path in sorted(index.glob("*.parquet")) if index.is_dir() else []:
        for batch in pq.ParquetFile(path).iter_batches(columns=["key", "lineDigest"], batch_size=65_536):
            yield from zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True)


def _apply_delta(
    state: MirrorState, manifest: Mapping[str, Any], incoming: Path, staging: Path, runs: Path
) -> list[ContentEntry]:
    changes = {
        c.key: c for c in (parse_change(line, where=CHANGES_PATH) for line in _lines(incoming / CHANGES_PATH))
    }
    carried: dict[bytes, bytes] = {}
    for where, line in state_lines(incoming):
        key = key_of_envelope(json.loads(line))
        change = changes.get(key)
        if change is None or change.op == REMOVE or change.digest != line_digest(line) or key in carried:
            raise BundleIntegrityError(
                f"{where}: record {_id_of(key)} is not an add or change of changes.jsonl.zst",
                details={"file": where},
            )
        carried[key] = line
    if len(carried) != sum(1 for c in changes.values() if c.op != REMOVE):
        raise BundleIntegrityError(
            "a change of changes.jsonl.zst has no record line", details={"file": CHANGES_PATH}
        )
    _check_old_digests(state, changes)
    per_shard = int(manifest.get("options", {}).get("recordsPerShard", 250_000))
    old_contents = [ContentEntry.from_json(c) for c in state.value["contents"]]
    runs.mkdir()
    patched = patch_state(
        state.path, old_contents, changes, carried, staging, records_per_shard=per_shard, temp_dir=runs
    )
    if patched is not None:
        return patched
    shutil.rmtree(staging, ignore_errors=True)  # a partial patch: rebuild from scratch
    drop = {key for key, c in changes.items() if c.op != ADD}

    def items() -> Iterator[tuple[str, bytes, bytes]]:
        for where, line in state_lines(state.path):
            # The key is the first item; skip dropped records before deriving index rows.
            produced = items_of_line(line, where=where)
            first = next(produced)
            if first[1] in drop:
                continue
            yield first
            yield from produced
        for key in sorted(carried):
            yield from items_of_line(carried[key], where="delta")

    return write_sorted(items(), temp_dir=str(runs), out_root=str(staging), records_per_shard=per_shard)


def _check_old_digests(state: MirrorState, changes: Mapping[bytes, Change]) -> None:
    """Every tombstone and change names the digest the state holds; every add is new."""
    found: set[bytes] = set()
    for key, digest in record_index_pairs(state.path):
        change = changes.get(key)
        if change is None:
            continue
        found.add(key)
        if change.op == ADD or change.old_digest != digest:
            raise MirrorChainError(
                f"the delta's {change.op} of {_id_of(key)} does not match the mirror's record",
                details={"reason": "base-mismatch"},
            )
    missing = [c for key, c in changes.items() if c.op != ADD and key not in found]
    if missing:
        raise MirrorChainError(
            f"the delta {missing[0].op}s {_id_of(missing[0].key)}, which the mirror does not hold",
            details={"reason": "base-mismatch"},
        )


def _check_result(staging: Path, manifest: Mapping[str, Any], contents: Sequence[ContentEntry]) -> None:
    """The new state holds exactly the record set and counts the exporter signed."""
    signed = manifest["mirror"]["recordSet"]
    built = RecordSet.of(record_index_pairs(staging)).to_json()
    if built != signed:
        raise BundleIntegrityError(
            f"the mirror after applying {manifest['exportId']} holds record set {built['digest']} "
            f"({built['records']} records); the exporter signed {signed['digest']} ({signed['records']})",
            details={"built": built, "signed": signed},
        )
    counts: dict[str, int] = {}
    for entry in contents:
        if entry.path.startswith(_RAW) and entry.records is not None:
            kind = _KIND_OF_FOLDER[entry.path.split("/")[2]]
            counts[kind] = counts.get(kind, 0) + entry.records
    if counts != dict(manifest["counts"]):
        raise BundleIntegrityError(
            f"record counts {counts} differ from the manifest's {manifest['counts']}",
            details={"counts": counts},
        )


def _id_of(key: bytes) -> str:
    return key.split(b"\x00")[1].decode("utf-8", "replace")


_KIND_OF_FOLDER: Final = {kind.plural: kind.value for kind in Kind}
