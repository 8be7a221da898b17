"""``stella export verify``: recompute everything a bundle claims, name every mismatch.

Verification is one pass over the bundle's files, whatever the form: each file is
hashed, sized and (for JSON-lines shards) its records counted as it streams by; small
control files (``export.json``, ``provenance.json``, ``signatures/*``) are kept. Only
then are the observations compared with the manifest. One pass is what lets the same
code check a directory or a ``.tar.zst`` without extracting it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import zstandard

from stella.bundle.manifest import ContentEntry, parse_manifest
from stella.errors import BundleIntegrityError, NotFoundError

__all__ = [
    "CONTROL_FILES",
    "Mismatch",
    "Observation",
    "VerifyReport",
    "check_observations",
    "observe",
    "verify_directory",
]

CONTROL_FILES = ("export.json", "provenance.json")
_CONTROL_MAX = 64 * 1024 * 1024
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Observation:
    digest: str
    bytes: int
    records: int | None


@dataclass(frozen=True, slots=True)
class Mismatch:
    path: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass
class VerifyReport:
    bundle: str
    export_id: str | None = None
    checked: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    signatures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def to_json(self) -> dict[str, Any]:
        return {
            "bundle": self.bundle,
            "exportId": self.export_id,
            "ok": self.ok,
            "filesChecked": self.checked,
            "mismatches": [m.to_json() for m in self.mismatches],
            "signatures": self.signatures,
        }


def _is_control(path: str) -> bool:
    return path in CONTROL_FILES or path.startswith("signatures/")


def observe(path: str, stream: IO[bytes]) -> tuple[Observation, bytes | None]:
    """Hash, size and (for ``.jsonl.zst``) count the records of one file as it streams."""
    digest = hashlib.sha256()
    size = 0
    keep = _is_control(path)
    kept: list[bytes] = []
    counter = _LineCounter() if path.endswith(".jsonl.zst") else None
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            break
        digest.update(chunk)
        size += len(chunk)
        if counter is not None:
            counter.feed(chunk)
        if keep:
            if size > _CONTROL_MAX:
                raise BundleIntegrityError(
                    f"{path} is larger than any valid control file", details={"file": path}
                )
            kept.append(chunk)
    records = counter.finish() if counter is not None else None
    return Observation("sha256:" + digest.hexdigest(), size, records), b"".join(kept) if keep else None


class _LineCounter:
    """Counts newline-terminated records inside a zstd stream; -1 if it does not decode."""

    def __init__(self) -> None:
        self._decompressor = zstandard.ZstdDecompressor().decompressobj()
        self._lines = 0
        self._broken = False

    def feed(self, chunk: bytes) -> None:
        if self._broken:
            return
        try:
            self._lines += self._decompressor.decompress(chunk).count(b"\n")
        except zstandard.ZstdError:
            self._broken = True

    def finish(self) -> int:
        return -1 if self._broken or not self._decompressor.eof else self._lines


def check_observations(
    bundle: str, observed: Mapping[str, Observation], control: Mapping[str, bytes]
) -> tuple[VerifyReport, dict[str, Any]]:
    """Compare what was observed with what ``export.json`` and ``provenance.json`` claim."""
    report = VerifyReport(bundle=bundle)
    if "export.json" not in control:
        raise BundleIntegrityError(
            f"{bundle}: no export.json: not a bundle, or an unfinished one", details={"file": "export.json"}
        )
    manifest, entries = parse_manifest(control["export.json"])
    report.export_id = manifest.get("exportId")
    listed: dict[str, ContentEntry] = {e.path: e for e in entries}
    for path, entry in sorted(listed.items()):
        seen = observed.get(path)
        report.checked += 1
        if seen is None:
            report.mismatches.append(Mismatch(path, "listed in export.json but missing"))
            continue
        if seen.bytes != entry.bytes:
            report.mismatches.append(Mismatch(path, f"size {seen.bytes} != manifest {entry.bytes}"))
        if seen.digest != entry.digest:
            report.mismatches.append(Mismatch(path, f"digest {seen.digest} != manifest {entry.digest}"))
        if entry.records is not None and seen.records is not None and seen.records != entry.records:
            reason = (
                "does not decompress"
                if seen.records < 0
                else f"records {seen.records} != manifest {entry.records}"
            )
            report.mismatches.append(Mismatch(path, reason))
    for path in sorted(observed):
        if path not in listed and not _is_control(path):
            report.mismatches.append(Mismatch(path, "present but not listed in export.json"))
    provenance = control.get("provenance.json")
    if provenance is not None:
        _check_provenance_binding(provenance, observed["export.json"], report)
    return report, manifest


def _check_provenance_binding(provenance: bytes, manifest_seen: Observation, report: VerifyReport) -> None:
    try:
        statement = json.loads(provenance)
        subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    except (ValueError, KeyError, TypeError):
        report.mismatches.append(Mismatch("provenance.json", "not an in-toto statement with subjects"))
        return
    if subjects.get("export.json") != manifest_seen.digest.split(":", 1)[1]:
        report.mismatches.append(
            Mismatch("provenance.json", "subject export.json does not match export.json's digest")
        )


def _walk(root: Path) -> Iterator[tuple[str, Path]]:
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            full = Path(directory) / name
            if full.is_symlink():
                raise BundleIntegrityError(
                    f"{full.relative_to(root)} is a symbolic link; bundles hold regular files only"
                )
            yield full.relative_to(root).as_posix(), full


def verify_directory(root: Path) -> tuple[VerifyReport, dict[str, Any], dict[str, bytes]]:
    """Verify a bundle folder; returns the report, the manifest and the control files."""
    if not root.is_dir():
        raise NotFoundError(f"bundle {root} does not exist or is not a folder", details={"bundle": str(root)})
    observed: dict[str, Observation] = {}
    control: dict[str, bytes] = {}
    for relative, full in _walk(root):
        with full.open("rb") as stream:
            seen, kept = observe(relative, stream)
        observed[relative] = seen
        if kept is not None:
            control[relative] = kept
    report, manifest = check_observations(str(root), observed, control)
    return report, manifest, control
