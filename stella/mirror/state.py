"""A mirror folder on the air-gapped side, and how its state is switched atomically.

Layout of ``--into ROOT``::

    ROOT/current -> states/<exportId>     one symlink: the state readers use
    ROOT/states/<exportId>/
        mirror.json                       what this state is (tenant, name, sequence, expiry, record set, files)
        export.json                       the manifest of the bundle that produced it (signed elsewhere)
        appliedExportIds.log              append-only: one JSON line per applied export, oldest first
        data/raw/<kind>/part-*.jsonl.zst  the records (json:raw lines)
        data/indexes/<index>/part-*.parquet
    ROOT/.staging-*                       a state being built (removed by the next import)
    ROOT/.lock                            one importer at a time

A new state is built in a staging folder beside the old one, every file and folder is
fsynced, the folder is renamed into ``states/``, and a new symlink is renamed over
``current`` (one ``rename(2)``: readers see the old state or the new one, never a mix).
Only then is the old state removed. The log travels inside the state, so the log and
the state it describes always switch together.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from stella.bundle.paths import MANIFEST
from stella.canonical import dumps
from stella.errors import BundleIntegrityError, ConflictError
from stella.guards import strictjson

__all__ = [
    "APPLIED_LOG",
    "STATE_FILE",
    "MirrorState",
    "applied_log",
    "current_state",
    "fsync_tree",
    "lock_mirror",
    "new_staging",
    "switch_state",
    "write_state_files",
]

STATE_SCHEMA: Final = "https://stellaops.io/export-center/mirror-state/v1"
STATE_FILE: Final = "mirror.json"
APPLIED_LOG: Final = "appliedExportIds.log"
CURRENT: Final = "current"
STATES: Final = "states"
STAGING_PREFIX: Final = ".staging-"


@dataclass(frozen=True)
class MirrorState:
    """The current state of a mirror, as ``mirror.json`` records it."""

    path: Path
    value: Mapping[str, Any]

    @property
    def tenant(self) -> str:
        return str(self.value["tenant"])

    @property
    def name(self) -> str:
        return str(self.value["name"])

    @property
    def sequence(self) -> int:
        return int(self.value["sequence"])

    @property
    def export_id(self) -> str:
        return str(self.value["exportId"])

    @property
    def manifest_digest(self) -> str:
        return str(self.value["manifestDigest"])

    def file(self, relative: str) -> Path:
        return self.path / relative


def current_state(root: Path) -> MirrorState | None:
    """The state ``current`` points at, or None for an empty mirror.

    Raises:
        BundleIntegrityError: ``current`` exists but its state is unreadable.
    """
    link = root / CURRENT
    if not link.is_symlink():
        return None
    target = root / os.readlink(link)
    try:
        value = strictjson.loads(
            (target / STATE_FILE).read_bytes(), what=STATE_FILE, error=BundleIntegrityError
        )
    except OSError as exc:
        raise BundleIntegrityError(
            f"mirror {root}: current state {target.name} is unreadable: {exc}", details={"mirror": str(root)}
        ) from exc
    return MirrorState(target, value)


def applied_log(state: MirrorState | None) -> list[dict[str, Any]]:
    if state is None:
        return []
    path = state.file(APPLIED_LOG)
    return [
        strictjson.loads(line, what=APPLIED_LOG, error=BundleIntegrityError)
        for line in path.read_bytes().splitlines()
        if line.strip()
    ]


@contextmanager
def lock_mirror(root: Path) -> Iterator[None]:
    """One importer per mirror; leftovers of an interrupted import are removed under the lock."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ConflictError(
                f"another import is running on mirror {root}", details={"mirror": str(root)}
            ) from exc
        try:
            for leftover in root.glob(f"{STAGING_PREFIX}*"):
                shutil.rmtree(leftover, ignore_errors=True)
            _remove_orphans(root)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_orphans(root: Path) -> None:
    """States that ``current`` does not point at: a crash after the switch, before the cleanup."""
    states = root / STATES
    if not states.is_dir():
        return
    keep = os.readlink(root / CURRENT).split("/")[-1] if (root / CURRENT).is_symlink() else None
    for folder in states.iterdir():
        if folder.name != keep:
            shutil.rmtree(folder, ignore_errors=True)


def new_staging(root: Path) -> Path:
    staging = root / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
    staging.mkdir()
    return staging


def fsync_tree(folder: Path) -> None:
    """fsync every file, then every folder bottom-up, so the rename publishes durable bytes."""
    for directory, _dirs, files in os.walk(folder, topdown=False):
        for name in files:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(directory))


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_state_files(
    staging: Path,
    state: Mapping[str, Any],
    manifest_bytes: bytes,
    previous: MirrorState | None,
    entry: Mapping[str, Any],
) -> None:
    """``mirror.json``, ``export.json`` and the log (the previous state's log plus one line)."""
    (staging / STATE_FILE).write_bytes(dumps(dict(state)) + b"\n")
    (staging / MANIFEST).write_bytes(manifest_bytes)
    old = previous.file(APPLIED_LOG).read_bytes() if previous is not None else b""
    (staging / APPLIED_LOG).write_bytes(old + dumps(dict(entry)) + b"\n")


def switch_state(root: Path, staging: Path, name: str) -> Path:
    """Publish ``staging`` as ``states/<name>`` and point ``current`` at it (one rename); drop the old state."""
    fsync_tree(staging)
    states = root / STATES
    states.mkdir(exist_ok=True)
    final = states / name
    if final.exists():  # an orphan of an interrupted switch to this very state
        shutil.rmtree(final)
    os.rename(staging, final)
    _fsync_dir(states)
    link = root / f"{STAGING_PREFIX}link-{uuid.uuid4().hex}"
    os.symlink(f"{STATES}/{name}", link)
    old = os.readlink(root / CURRENT) if (root / CURRENT).is_symlink() else None
    os.replace(link, root / CURRENT)
    _fsync_dir(root)
    if old is not None and old.split("/")[-1] != name:
        shutil.rmtree(root / old, ignore_errors=True)
    return final
