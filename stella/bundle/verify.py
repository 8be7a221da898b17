"""``stella export verify``: recompute everything a bundle claims, name every mismatch.

Verification is one pass over the bundle's files, whatever the form: each file is
hashed, sized and (for JSON-lines shards) its records counted as it streams by; small
control files (``export.json``, ``provenance.json``, ``signatures/*``) are kept. Only
then are the observations compared, in layers, as TUF orders its checks (research §1):

1. signatures (:mod:`stella.bundle.sign`): is ``export.json`` what a trusted key signed?
2. policy (:mod:`stella.bundle.trust`): is that key trusted for this tenant and profile,
   and is the bundle not older than what this side already accepted (rollback)?
3. content: every digest, size and record count, nothing missing, nothing extra, and
   ``provenance.json``'s subjects agree with the manifest.

One pass is what lets the same code check a directory or a ``.tar.zst`` without
extracting it. Each mismatch carries its error code; the first one decides the exit
status, so a forged manifest reads as a signature failure, not as a digest mismatch.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from backports import zstd

from stella.bundle.encrypt import CiphertextFile, ciphertext_files
from stella.bundle.manifest import MANIFEST_MAX_BYTES, ContentEntry, parse_manifest
from stella.bundle.paths import CONTROL_FILES, SIGNATURE_FILES
from stella.bundle.sign import check_signatures
from stella.errors import (
    BundleIntegrityError,
    SignatureError,
    StellaError,
    TrustError,
    UsageError,
)
from stella.guards import strictjson
from stella.guards.files import open_regular, path_error, scan_tree
from stella.guards.streams import MAX_WINDOW_LOG, READ_CHUNK

if TYPE_CHECKING:
    from stella.bundle.trust import TrustPolicy

__all__ = [
    "BundleVerification",
    "Mismatch",
    "Observation",
    "VerifyReport",
    "check_observations",
    "failure",
    "iter_members",
    "not_a_bundle",
    "observe",
    "observe_bundle",
    "verify_bundle",
]

_CONTROL_MAX = 64 * 1024 * 1024
_CHUNK = 1 << 20
_CHECKSUM = BundleIntegrityError.code


@dataclass(frozen=True, slots=True)
class Observation:
    digest: str
    bytes: int
    records: int | None
    # Hashing stopped past the size export.json declares: ``bytes`` is only a lower bound.
    oversized: bool = False


@dataclass(frozen=True, slots=True)
class Mismatch:
    path: str
    reason: str
    code: str = _CHECKSUM

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason, "code": self.code}


@dataclass
class VerifyReport:
    bundle: str
    export_id: str | None = None
    checked: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    signature: dict[str, Any] = field(default_factory=lambda: {"status": "unsigned"})
    trust: str | None = None

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
            "signature": self.signature,
            "trust": self.trust,
        }


_ERRORS: dict[str, type[StellaError]] = {
    error.code: error for error in (BundleIntegrityError, SignatureError, TrustError)
}


def failure(report: VerifyReport) -> StellaError:
    """The error a failed report raises: the first mismatch decides its code, and is named."""
    first = report.mismatches[0]
    more = f" (and {len(report.mismatches) - 1} more problem(s))" if len(report.mismatches) > 1 else ""
    return _ERRORS[first.code](
        f"{report.bundle}: {first.path}: {first.reason}{more}",
        details={**report.to_json(), "file": first.path, "reason": first.reason},
    )


def _is_control(path: str) -> bool:
    # Only the six known names are kept in memory (64 MiB cap each); any other file, even
    # under signatures/, is just hashed and then reported as extra, so it cannot fill memory.
    return path in CONTROL_FILES or path in SIGNATURE_FILES


def observe(path: str, stream: IO[bytes], *, limit: int | None = None) -> tuple[Observation, bytes | None]:
    """Hash, size and (for ``.jsonl.zst``) count the records of one file as it streams.

    ``limit`` is the size the manifest declares: a file found to be larger is not hashed
    any further (it fails on its size anyway), so a tiny archive claiming a huge member
    costs no more than its declared size.
    """
    digest = hashlib.sha256()
    size = 0
    keep = _is_control(path)
    kept: list[bytes] = []
    counter = _LineCounter() if path.endswith(".jsonl.zst") else None
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            break
        if limit is not None and size + len(chunk) > limit:
            return Observation("sha256:(not computed)", size + len(chunk), None, oversized=True), None
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
    """Counts newline-terminated records inside a zstd stream; -1 if it does not decode.

    Output is taken at most :data:`READ_CHUNK` bytes at a time, so one compressed chunk
    that expands to a gigabyte never sits in memory at once. Concatenated frames are
    valid zstd (as :mod:`stella.guards.streams` reads them); a stream that ends inside a
    frame, or carries bytes after the last frame that are not a frame, does not decode.
    """

    def __init__(self) -> None:
        self._decompressor = self._new()
        self._lines = 0
        self._broken = False

    @staticmethod
    def _new() -> zstd.ZstdDecompressor:
        return zstd.ZstdDecompressor(options={zstd.DecompressionParameter.window_log_max: MAX_WINDOW_LOG})

    def _ended(self) -> bool:
        return bool(self._decompressor.eof)

    def feed(self, chunk: bytes) -> None:
        data = chunk
        try:
            while data and not self._broken:
                if self._ended():
                    self._decompressor = self._new()
                out = self._decompressor.decompress(data, max_length=READ_CHUNK)
                self._lines += out.count(b"\n")
                data = self._decompressor.unused_data if self._ended() else b""
                while not self._ended() and not self._decompressor.needs_input:
                    self._lines += self._decompressor.decompress(b"", max_length=READ_CHUNK).count(b"\n")
                if self._ended():
                    data = self._decompressor.unused_data
        except zstd.ZstdError:
            self._broken = True

    def finish(self) -> int:
        return -1 if self._broken or not self._ended() else self._lines


def check_observations(
    bundle: str,
    observed: Mapping[str, Observation],
    control: Mapping[str, bytes],
    *,
    report: VerifyReport | None = None,
) -> tuple[VerifyReport, dict[str, Any]]:
    """Compare what was observed with what ``export.json`` and ``provenance.json`` claim.

    Encrypted payload files may be present as their ciphertext (checked against the
    digest and size ``provenance.json`` records) or, after ``stella export decrypt``, as
    plaintext (checked against the manifest); never both, never neither.
    """
    report = report if report is not None else VerifyReport(bundle=bundle)
    if "export.json" not in control:
        raise BundleIntegrityError(
            f"{bundle}: no export.json: not a bundle, or an unfinished one", details={"file": "export.json"}
        )
    manifest, entries = parse_manifest(control["export.json"])
    report.export_id = manifest.get("exportId")
    listed: dict[str, ContentEntry] = {e.path: e for e in entries}
    statement = _statement(control.get("provenance.json"), report)
    ciphertexts = _ciphertexts(statement, listed, report)
    by_plaintext = {c.plaintext: c for c in ciphertexts.values()}
    encrypted_form = any(c.path in observed for c in ciphertexts.values())
    for path, entry in sorted(listed.items()):
        report.checked += 1
        cipher = by_plaintext.get(path)
        if cipher is not None and cipher.path in observed:
            if path in observed:
                report.mismatches.append(Mismatch(path, f"present both as plaintext and as {cipher.path}"))
            _compare(
                report,
                cipher.path,
                observed[cipher.path],
                cipher.bytes,
                cipher.digest,
                None,
                "provenance.json",
            )
            continue
        seen = observed.get(path)
        if seen is None:
            if cipher is not None and encrypted_form:  # blame the file this form should hold
                report.mismatches.append(
                    Mismatch(cipher.path, f"recorded in provenance.json for {path} but missing")
                )
            else:
                also = f" (nor its ciphertext {cipher.path})" if cipher is not None else ""
                report.mismatches.append(Mismatch(path, f"listed in export.json but missing{also}"))
            continue
        _compare(report, path, seen, entry.bytes, entry.digest, entry.records, "export.json")
    known = set(listed) | set(ciphertexts) | set(CONTROL_FILES) | set(SIGNATURE_FILES)
    for path in sorted(observed):
        if path in known:
            continue
        if path.startswith("signatures/"):
            report.mismatches.append(Mismatch(path, "present but not a signature file of the bundle format"))
        else:
            report.mismatches.append(Mismatch(path, "present but not listed in export.json"))
    if "export.json" in observed and statement is not None:
        _check_subjects(statement, observed["export.json"], listed, ciphertexts, report)
    return report, manifest


def _compare(
    report: VerifyReport,
    path: str,
    seen: Observation,
    size: int,
    digest: str,
    records: int | None,
    source: str,
) -> None:
    if seen.oversized:
        report.mismatches.append(
            Mismatch(path, f"larger than the {size} bytes {source} declares (not hashed further)")
        )
        return
    if seen.bytes != size:
        report.mismatches.append(Mismatch(path, f"size {seen.bytes} != {source} {size}"))
    if seen.digest != digest:
        report.mismatches.append(Mismatch(path, f"digest {seen.digest} != {source} {digest}"))
    if records is not None and seen.records is not None and seen.records != records:
        reason = (
            "does not decompress" if seen.records < 0 else f"records {seen.records} != {source} {records}"
        )
        report.mismatches.append(Mismatch(path, reason))


def _statement(provenance: bytes | None, report: VerifyReport) -> dict[str, Any] | None:
    if provenance is None:
        report.mismatches.append(Mismatch("provenance.json", "missing: every bundle carries its provenance"))
        return None
    try:
        statement = strictjson.loads(provenance, what="provenance.json", error=BundleIntegrityError)
    except BundleIntegrityError as exc:
        report.mismatches.append(Mismatch("provenance.json", exc.message))
        return None
    try:
        if not isinstance(statement, dict) or not isinstance(statement["subject"], list):
            raise TypeError("no subject list")
    except (KeyError, TypeError):
        report.mismatches.append(Mismatch("provenance.json", "not an in-toto statement with subjects"))
        return None
    return statement


def _ciphertexts(
    statement: Mapping[str, Any] | None, listed: Mapping[str, ContentEntry], report: VerifyReport
) -> dict[str, CiphertextFile]:
    if statement is None:
        return {}
    try:
        found = ciphertext_files(statement)
    except BundleIntegrityError as exc:
        report.mismatches.append(Mismatch("provenance.json", exc.message))
        return {}
    for cipher in found.values():
        if cipher.plaintext not in listed or cipher.path in listed:
            report.mismatches.append(
                Mismatch(
                    "provenance.json", f"ciphertext {cipher.path} does not stand for a file of export.json"
                )
            )
            return {}
    return found


def _check_subjects(
    statement: Mapping[str, Any],
    manifest_seen: Observation,
    listed: Mapping[str, ContentEntry],
    ciphertexts: Mapping[str, CiphertextFile],
    report: VerifyReport,
) -> None:
    """The statement must bind this export.json, and agree with it on every file it names."""
    try:
        subjects = {str(s["name"]): "sha256:" + str(s["digest"]["sha256"]) for s in statement["subject"]}
    except (KeyError, TypeError):
        report.mismatches.append(Mismatch("provenance.json", "subjects are malformed"))
        return
    if subjects.get("export.json") != manifest_seen.digest:
        report.mismatches.append(
            Mismatch("export.json", "digest does not match the export.json subject of provenance.json")
        )
    expected = {path: entry.digest for path, entry in listed.items()}
    expected.update({path: cipher.digest for path, cipher in ciphertexts.items()})
    for name, digest in sorted(subjects.items()):
        if name != "export.json" and expected.get(name) != digest:
            report.mismatches.append(
                Mismatch("provenance.json", f"subject {name} does not match the bundle's manifest")
            )
            return


def _walk(root: Path) -> Iterator[tuple[str, Path]]:
    """Every regular file of a bundle folder; a link (to a file or a folder) or a special
    file anywhere in it is refused, as the archive reader refuses such members."""
    scan = scan_tree(root)
    if scan.refused:
        first = scan.refused[0]
        relative = first.path.relative_to(root).as_posix()
        raise BundleIntegrityError(
            f"{relative} is a {first.kind}; bundles hold regular files only",
            details={"file": relative, "reason": "not-regular-file", "kind": first.kind},
        )
    for full in scan.files:
        yield full.relative_to(root).as_posix(), full


def iter_members(path: Path, caps: Mapping[str, int] | None = None) -> Iterator[tuple[str, BinaryIO]]:
    """``(relative path, open stream)`` of every file of a bundle folder or ``.tar.zst``.

    Archives are streamed member by member through the safe reader, never extracted;
    ``caps`` tightens its limits (``max_members``, ``max_member_bytes``, ``max_total_bytes``).

    Raises:
        NotFoundError: no such folder or archive.
        BundleIntegrityError: a symlink, or an unsafe, corrupt or truncated archive member.
    """
    from stella.bundle.archive import iter_tar_zst

    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError) as exc:
        raise path_error(path, "bundle") from exc  # "symlink loop", "does not exist"... as it is
    if stat.S_ISDIR(mode):
        for relative, full in _walk(path):
            with open_regular(full, relative, error=BundleIntegrityError) as stream:
                yield relative, stream
    elif stat.S_ISREG(mode) and path.name.endswith(".tar.zst"):
        for relative, _size, member in iter_tar_zst(path, **(caps or {})):
            yield relative, member
    else:
        raise UsageError(
            f"{path} is not a bundle: neither a bundle folder nor a .tar.zst archive",
            details={"bundle": str(path)},
        )


def _declared_sizes(path: Path) -> dict[str, int]:
    """The sizes a bundle folder's ``export.json`` declares, read before anything is hashed.

    Empty when there is no readable manifest (the full check then names the problem).
    An archive streams ``export.json`` after the data it lists; there the decompressor's
    ratio guard bounds what a lying member can cost instead.
    """
    try:
        if not stat.S_ISDIR(os.stat(path).st_mode):
            return {}
    except (OSError, ValueError):
        return {}
    try:
        with open_regular(path / "export.json", "export.json", error=BundleIntegrityError) as handle:
            _manifest, entries = parse_manifest(handle.read(MANIFEST_MAX_BYTES + 1))
    except (StellaError, OSError):
        return {}
    return {entry.path: entry.bytes for entry in entries}


def observe_bundle(
    path: Path, caps: Mapping[str, int] | None = None
) -> tuple[dict[str, Observation], dict[str, bytes]]:
    """Observe every file of a bundle (see :func:`iter_members`); keep the control files."""
    observed: dict[str, Observation] = {}
    control: dict[str, bytes] = {}
    limits = _declared_sizes(path)
    for relative, stream in iter_members(path, caps):
        seen, kept = observe(relative, stream, limit=limits.get(relative))
        observed[relative] = seen
        if kept is not None:
            control[relative] = kept
    return observed, control


@dataclass
class BundleVerification:
    """The verdict, plus what a caller needs next (decrypt, archive, record-seen)."""

    report: VerifyReport
    manifest: dict[str, Any] | None
    control: dict[str, bytes]


def not_a_bundle(path: Path) -> UsageError:
    """A folder with none of a bundle's control files: the wrong path, not a tampered bundle.

    Tampering that removes ``export.json`` still leaves ``provenance.json`` or signatures,
    so it is reported as a checksum failure; a folder with neither was never a bundle.
    The message names bundles inside it, since the usual mistake is giving their parent.
    """
    inside = sorted(p.parent.name for p in path.glob("*/export.json"))[:5] if path.is_dir() else []
    hint = f"; bundles inside it: {', '.join(inside)}" if inside else ""
    return UsageError(
        f"{path} is not a bundle (no export.json, provenance.json or signatures/){hint}",
        details={"bundle": str(path), "bundlesInside": inside},
    )


def verify_bundle(
    path: Path, *, trust: TrustPolicy | None = None, caps: Mapping[str, int] | None = None
) -> BundleVerification:
    """Verify a bundle folder or archive: signatures, then policy, then content.

    With ``trust=None`` the check is integrity-only: signatures are checked only against
    the bundle's own public key, and the report says they were not trusted.

    Raises:
        NotFoundError: no such bundle.
        UsageError: a folder or archive with no control file at all (:func:`not_a_bundle`).
        BundleIntegrityError: no ``export.json`` but other bundle files, or an unsafe archive.
    """
    observed, control = observe_bundle(path, caps)
    report = VerifyReport(bundle=str(path), trust=None if trust is None else trust.source)
    if not control and not any(name.startswith("signatures/") for name in observed):
        raise not_a_bundle(path)
    if "export.json" not in control:
        raise BundleIntegrityError(
            f"{path}: no export.json: not a bundle, or an unfinished one", details={"file": "export.json"}
        )
    signatures = check_signatures(control, observed.keys(), trust=trust)
    report.signature = signatures.to_json()
    report.mismatches.extend(Mismatch(p.path, p.reason, p.code) for p in signatures.problems)
    try:
        _report, manifest = check_observations(str(path), observed, control, report=report)
    except BundleIntegrityError:
        if report.mismatches:  # export.json unreadable because it was tampered with: already named
            return BundleVerification(report, None, control)
        raise
    if trust is not None and signatures.status == "trusted" and signatures.key_id is not None:
        violations = trust.check(manifest, signatures.key_id)
        position = len(signatures.problems)
        report.mismatches[position:position] = [
            Mismatch(v.file, v.reason, TrustError.code) for v in violations
        ]
    return BundleVerification(report, manifest, control)
