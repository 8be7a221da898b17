"""The bundle as one deterministic ``.tar.zst``, and a streaming reader that refuses unsafe members.

Reproducibility (BRIEF contract 5; research notes §4): the same tree gives the same bytes
on any machine, whatever the file mtimes, owners, umask, locale, timezone or thread count.

* Members are **regular files only**, sorted by the UTF-8 bytes of their relative path
  (the order of ``contents`` in the manifest). Directory entries are omitted: the
  manifest lists files, extractors create parents, and an entry per directory would only
  add modes and mtimes to keep stable. Empty directories therefore do not survive.
* Every header is hand-built: uid/gid 0, uname/gname "", mode 0644, the caller's integer
  ``mtime`` (the bundle's ``generatedAt``, never the wall clock).
* GNU tar format: no PAX records at all, hence no atime/ctime or fractional-mtime
  records; names over 100 bytes use a ``././@LongLink`` entry (fixed name, no time
  fields), sizes over 8 GiB a base-256 field. GNU tar, bsdtar and Python read it.
* zstd: one frame, level 3, windowLog 21 (2 MiB, far below the 2^27 decoders accept by
  default), content size and checksum written, no dictionary id, always multi-threaded
  framing (nbWorkers >= 1). Single-threaded mode produces different bytes; multi-threaded
  output does not depend on the worker count (verified by a test). Level 19 would be
  ~100x slower for ~15 % smaller output. Bytes can change with the libzstd version, so the
  uncompressed tar is the canonical form and CI pins ``zstandard``.

The reader is for the import side, where the archive is hostile until proven otherwise:
it streams members without touching disk and refuses absolute or ``..`` names, links,
devices, duplicates (also case-insensitive ones) and oversize members (research §5).
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, Final, cast

import zstandard

from stella.errors import BundleIntegrityError, UsageError
from stella.guards.files import open_regular
from stella.guards.streams import MAX_WINDOW_LOG, READ_CHUNK, open_decompressed
from stella.storage import HashingWriter, atomic_local

__all__ = [
    "FILE_MODE",
    "MAX_WINDOW_LOG",
    "ZSTD_LEVEL",
    "ZSTD_WINDOW_LOG",
    "check_member_name",
    "iter_tar_zst",
    "write_tar_zst",
]

FILE_MODE: Final = 0o644
ZSTD_LEVEL: Final = 3
ZSTD_WINDOW_LOG: Final = 21
_MAX_THREADS: Final = 8
_MAX_MTIME: Final = 8**11 - 1  # what the 12-byte octal header field holds

# Beyond these a name breaks common filesystems (PATH_MAX, NAME_MAX).
MAX_PATH_BYTES: Final = 4096
MAX_COMPONENT_BYTES: Final = 255
# Guards for the reader; callers should pass tighter caps derived from the signed manifest.
DEFAULT_MAX_MEMBER_BYTES: Final = 64 << 30
DEFAULT_MAX_TOTAL_BYTES: Final = 256 << 30
DEFAULT_MAX_MEMBERS: Final = 1_000_000
# A long-name or PAX header is read into memory whole by tarfile; cap it before that happens.
_MAX_EXTENDED_HEADER_BYTES: Final = 64 * 1024
# Tar pads to its record size (10 KiB for GNU tar and Python); allow generous blocking factors.
_MAX_TRAILER_BYTES: Final = 1 << 20
_STREAM_FAULTS: Final = frozenset({"truncated", "trailing-data", "corrupt", "bomb", "too-large"})
_EXTENDED_TYPES: Final = (
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
)


def check_member_name(name: str) -> str | None:
    """Why ``name`` is not a safe bundle path, or ``None`` if it is.

    The same rule guards writing and reading, so we never produce what we would refuse.
    """
    if not name:
        return "empty name"
    if name.startswith("/"):
        return "absolute path"
    if "\\" in name:
        return "backslash in name"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        return "control character in name"
    if unicodedata.normalize("NFC", name) != name:
        return "name is not NFC-normalised UTF-8"
    encoded = name.encode("utf-8", "surrogatepass")
    if len(encoded) > MAX_PATH_BYTES:
        return f"name longer than {MAX_PATH_BYTES} bytes"
    parts = name.split("/")
    if len(parts[0]) == 2 and parts[0][1] == ":":
        return "drive-letter path"
    for part in parts:
        if part in ("", ".", ".."):
            return f"path component {part!r}"
        if len(part.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES:
            return f"path component longer than {MAX_COMPONENT_BYTES} bytes"
    try:
        encoded.decode("utf-8")
    except UnicodeDecodeError:
        return "name is not valid UTF-8"
    return None


class _Collisions:
    """Rejects duplicates, case-only duplicates and file-versus-directory clashes.

    Case-only duplicates extract onto one file on macOS and Windows, which is where an
    air-gapped transfer often passes through.
    """

    def __init__(self) -> None:
        self._files: set[str] = set()
        self._dirs: set[str] = set()

    def add(self, name: str) -> str | None:
        key = name.casefold()
        if key in self._files:
            return "duplicate name (possibly differing only in case)"
        if key in self._dirs:
            return "a file with the name of a directory"
        parents = key.split("/")[:-1]
        for depth in range(1, len(parents) + 1):
            parent = "/".join(parents[:depth])
            if parent in self._files:
                return f"a path under the file {parent!r}"
            self._dirs.add(parent)
        self._files.add(key)
        return None


@dataclass(frozen=True)
class _Entry:
    name: str
    path: Path
    size: int


def _scan(root: Path) -> list[_Entry]:
    """Every regular file under ``root``, sorted by UTF-8 path bytes; anything else is refused."""
    entries: list[_Entry] = []
    pending = [(root, "")]
    while pending:
        folder, prefix = pending.pop()
        with os.scandir(folder) as listing:
            for item in listing:
                name = prefix + item.name
                if item.is_symlink():
                    raise UsageError(f"cannot archive {name!r}: symbolic links are not allowed in a bundle")
                if item.is_dir(follow_symlinks=False):
                    pending.append((Path(item.path), name + "/"))
                elif item.is_file(follow_symlinks=False):
                    entries.append(_Entry(name, Path(item.path), item.stat(follow_symlinks=False).st_size))
                else:
                    raise UsageError(f"cannot archive {name!r}: only regular files go into a bundle")
    entries.sort(key=lambda entry: entry.name.encode("utf-8", "surrogateescape"))
    seen = _Collisions()
    for entry in entries:
        reason = check_member_name(entry.name) or seen.add(entry.name)
        if reason:
            raise UsageError(
                f"cannot archive {entry.name!r}: {reason}", details={"file": entry.name, "reason": reason}
            )
    return entries


def _tarinfo(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.mode = FILE_MODE
    info.type = tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _tar_size(infos: list[tarfile.TarInfo]) -> int:
    """Exact length of the tar stream, so zstd can record the content size up front."""
    total = 0
    for info in infos:
        total += len(info.tobuf(tarfile.GNU_FORMAT, "utf-8", "strict"))
        total += -(-info.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
    total += 2 * tarfile.BLOCKSIZE  # end-of-archive marker
    return -(-total // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


def _compressor(threads: int) -> zstandard.ZstdCompressor:
    params = zstandard.ZstdCompressionParameters(
        compression_level=ZSTD_LEVEL,
        window_log=ZSTD_WINDOW_LOG,
        threads=threads,
        write_checksum=1,
        write_content_size=1,
        write_dict_id=0,
    )
    return zstandard.ZstdCompressor(compression_params=params)


def write_tar_zst(src_dir: Path, out_path: Path, *, mtime: int, threads: int | None = None) -> str:
    """Archive every file under ``src_dir`` into ``out_path``; returns ``sha256:<hex>`` of it.

    ``threads`` only changes speed, never bytes (any value >= 1; default: CPUs, up to 8).
    The archive is written beside ``out_path`` and renamed into place, so readers never
    see half of it.

    Raises:
        UsageError: ``mtime`` out of range, or the tree holds a symlink, a special file, an
            unsafe or colliding name, or a file that changed while being archived.
    """
    if isinstance(mtime, bool) or not isinstance(mtime, int) or not 0 <= mtime <= _MAX_MTIME:
        raise UsageError(f"mtime must be an integer between 0 and {_MAX_MTIME}, got {mtime!r}")
    workers = threads if threads is not None else min(os.cpu_count() or 1, _MAX_THREADS)
    if workers < 1:
        raise UsageError("threads must be >= 1: single-threaded zstd produces different bytes")
    src_dir, out_path = Path(src_dir), Path(out_path)
    if out_path.resolve().is_relative_to(src_dir.resolve()):
        raise UsageError(f"the archive {out_path} must not be written inside the folder it archives")
    infos_and_paths = [(_tarinfo(e.name, e.size, mtime), e.path) for e in _scan(src_dir)]
    tar_size = _tar_size([info for info, _ in infos_and_paths])
    with atomic_local(out_path) as raw:
        hashed = HashingWriter(raw)
        with (
            _compressor(workers).stream_writer(cast(BinaryIO, hashed), size=tar_size, closefd=False) as zout,
            tarfile.open(
                fileobj=zout, mode="w|", format=tarfile.GNU_FORMAT, encoding="utf-8", errors="strict"
            ) as tar,
        ):
            for info, path in infos_and_paths:
                _add(tar, info, path)
    return hashed.digest


def _add(tar: tarfile.TarFile, info: tarfile.TarInfo, path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size != info.size:
            raise UsageError(f"cannot archive {info.name!r}: it changed while the bundle was being archived")
        tar.addfile(info, handle)


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuses oversized long-name/PAX headers *before* tarfile reads them into memory.

    ``_proc_member`` is CPython's (private, long-stable) dispatch point for header types.
    """

    def _proc_member(self, tarfile_: tarfile.TarFile) -> Any:
        if self.type in _EXTENDED_TYPES and self.size > _MAX_EXTENDED_HEADER_BYTES:
            raise BundleIntegrityError(
                f"archive member header of {self.size} bytes exceeds {_MAX_EXTENDED_HEADER_BYTES}",
                details={"file": self.name, "reason": "oversized extended header"},
            )
        return super()._proc_member(tarfile_)  # type: ignore[misc]


class _MemberReader(io.RawIOBase):
    """A member's bytes, with decoder failures reported as integrity errors naming the member."""

    def __init__(self, inner: IO[bytes], name: str) -> None:
        super().__init__()
        self._inner = inner
        self._name = name

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._inner.read(len(buffer))
        except BundleIntegrityError as exc:
            raise _at_member(exc, self._name) from None
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise _corrupt(self._name, exc) from exc
        buffer[: len(data)] = data
        return len(data)


def _at_member(exc: BundleIntegrityError, member: str) -> BundleIntegrityError:
    """A decompressor fault (truncated, trailing data, bomb) renamed to the member it hit."""
    if exc.details.get("reason") not in _STREAM_FAULTS or exc.details.get("file") == member:
        return exc
    return BundleIntegrityError(
        f"archive is corrupt at member {member!r}: {exc.message}", details={**exc.details, "file": member}
    )


def _corrupt(member: str, exc: BaseException) -> BundleIntegrityError:
    return BundleIntegrityError(
        f"archive is corrupt at member {member!r}: {exc}", details={"file": member, "reason": "corrupt"}
    )


def _refuse(member: str, reason: str) -> BundleIntegrityError:
    return BundleIntegrityError(
        f"unsafe archive member {member!r}: {reason}", details={"file": member, "reason": reason}
    )


def iter_tar_zst(
    path: Path,
    *,
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> Iterator[tuple[str, int, BinaryIO]]:
    """Stream ``(member_path, size, reader)`` for each file, never writing to disk.

    Each reader is valid only until the next item is requested (the archive is read
    once, front to back). Directory entries are checked and skipped. Caps apply to
    declared sizes, before any member data is decompressed.

    Raises:
        BundleIntegrityError: not a zstd-compressed tar, corrupt data, a zstd window above
            2^27, or an unsafe member (absolute, ``..``, link, device, FIFO, duplicate,
            oversize, too many); the message names the member.
    """
    seen = _Collisions()
    members = 0
    total = 0
    current = "(archive header)"
    raw = open_regular(path, "archive", error=BundleIntegrityError, follow_links=True)
    with io.BufferedReader(
        open_decompressed(raw, "zstd", what=Path(path).name, error=BundleIntegrityError), READ_CHUNK
    ) as zin:
        try:
            with tarfile.open(
                fileobj=zin, mode="r|", tarinfo=_BoundedTarInfo, encoding="utf-8", errors="strict"
            ) as tar:
                for member in tar:
                    current = member.name
                    reason = check_member_name(member.name.rstrip("/") if member.isdir() else member.name)
                    if reason:
                        raise _refuse(member.name, reason)
                    if member.isdir():
                        continue
                    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
                        raise _refuse(member.name, _kind(member))
                    reason = seen.add(member.name)
                    if reason:
                        raise _refuse(member.name, reason)
                    members += 1
                    total += member.size
                    if members > max_members:
                        raise _refuse(member.name, f"more than {max_members} members")
                    if member.size > max_member_bytes:
                        raise _refuse(
                            member.name, f"{member.size} bytes exceeds the {max_member_bytes}-byte cap"
                        )
                    if total > max_total_bytes:
                        raise _refuse(member.name, f"archive total exceeds the {max_total_bytes}-byte cap")
                    inner = tar.extractfile(member)
                    assert inner is not None  # regular files always have a reader
                    yield member.name, member.size, io.BufferedReader(_MemberReader(inner, member.name))
            current = "(end of archive)"
            _check_trailer(zin)
        except BundleIntegrityError as exc:
            raise _at_member(exc, current) from None
        except (tarfile.TarError, UnicodeError, EOFError, OSError) as exc:
            raise _corrupt(current, exc) from exc


def _check_trailer(stream: IO[bytes]) -> None:
    """Read to the end: only tar's zero padding may follow, and EOF checks the zstd checksum.

    tarfile stops at the end-of-archive marker, so without this a corrupted frame
    checksum or data appended after the archive would pass unnoticed.
    """
    seen = 0
    while block := stream.read(tarfile.RECORDSIZE):
        seen += len(block)
        if block.count(0) != len(block) or seen > _MAX_TRAILER_BYTES:
            raise BundleIntegrityError(
                "archive has data after its end-of-archive marker",
                details={"file": "(end of archive)", "reason": "trailing-data"},
            )


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "symbolic link"
    if member.islnk():
        return "hard link"
    if member.ischr() or member.isblk():
        return "device file"
    if member.isfifo():
        return "FIFO"
    return f"unsupported member type {member.type!r}"
