"""Only regular files are read; links and special files are reported, never followed.

A FIFO in an input folder blocks ``open()`` forever (while a tenant lock is held), a
link to ``/dev/urandom`` never ends, and a symlinked folder inside a bundle lets the
verifier read something the signed manifest never covered. Every reader of untrusted
trees (ingest folders, bundle folders, archives' sources, push and decrypt inputs)
goes through this module, so each such entry is treated the same way everywhere:
checked with ``lstat`` before it is opened, opened with ``O_NOFOLLOW|O_NONBLOCK`` (so
a FIFO swapped in after the check cannot block), and re-checked with ``fstat``.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from stella.errors import InputError, NotFoundError, StellaError, UsageError

__all__ = [
    "USER_FILE_MAX_BYTES",
    "Refused",
    "TreeScan",
    "check_file_arg",
    "check_folder_arg",
    "check_regular",
    "kind_of",
    "open_regular",
    "path_error",
    "read_user_file",
    "scan_tree",
]

_KINDS = (
    (stat.S_ISREG, "regular file"),
    (stat.S_ISDIR, "directory"),
    (stat.S_ISLNK, "symlink"),
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
)


def kind_of(mode: int) -> str:
    """A human name for what ``mode`` (from ``lstat``) describes."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "special file"


def _no_nul(path: str | Path, what: str) -> None:
    if "\x00" in str(path):
        raise UsageError(f"{what} {str(path)!r} contains a NUL character", details={"reason": "nul-in-path"})


def _refuse(path: str | Path, what: str, kind: str, error: type[StellaError]) -> StellaError:
    return error(
        f"{what} {path} is a {kind}, not a regular file: refused",
        details={"file": str(path), "kind": kind, "reason": "not-regular-file"},
    )


def check_regular(
    path: str | Path, what: str = "file", *, error: type[StellaError] = InputError, follow_links: bool = False
) -> os.stat_result:
    """``lstat`` of ``path`` if it is a regular file (not a link to one); else ``error``.

    ``follow_links`` is for a path the user named on the command line: a link there is
    the user's choice, but what it points at must still be a regular file.
    """
    _no_nul(path, what)
    try:
        info = os.stat(path) if follow_links else os.lstat(path)
    except FileNotFoundError as exc:
        raise NotFoundError(f"{what} {path} does not exist", details={"file": str(path)}) from exc
    if not stat.S_ISREG(info.st_mode):
        raise _refuse(path, what, kind_of(info.st_mode), error)
    return info


def open_regular(
    path: str | Path, what: str = "file", *, error: type[StellaError] = InputError, follow_links: bool = False
) -> BinaryIO:
    """Open a regular file for reading without following a link or blocking on a FIFO."""
    check_regular(path, what, error=error, follow_links=follow_links)
    nofollow = 0 if follow_links else os.O_NOFOLLOW
    try:
        fd = os.open(path, os.O_RDONLY | nofollow | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # replaced by a link after the check
            raise _refuse(path, what, "symlink", error) from exc
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _refuse(path, what, kind_of(info.st_mode), error)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


@dataclass(frozen=True, slots=True)
class Refused:
    """An entry of a tree that is not a regular file or a real directory."""

    path: Path
    kind: str


@dataclass
class TreeScan:
    files: list[Path] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)


def scan_tree(root: Path, *, skip_hidden: bool = False) -> TreeScan:
    """Regular files under ``root`` (sorted), and every link or special file met.

    Symlinked folders are reported, not entered.
    """
    scan = TreeScan()
    stack = [root]
    while stack:
        directory = stack.pop()
        with os.scandir(directory) as entries:
            ordered = sorted(entries, key=lambda e: e.name)
        for entry in ordered:
            if skip_hidden and entry.name.startswith("."):
                continue
            mode = entry.stat(follow_symlinks=False).st_mode
            path = Path(entry.path)
            if stat.S_ISDIR(mode):
                stack.append(path)
            elif stat.S_ISREG(mode):
                scan.files.append(path)
            else:
                scan.refused.append(Refused(path, kind_of(mode)))
    scan.files.sort()
    scan.refused.sort(key=lambda r: r.path)
    return scan


# Keys, identities, PIN files, trust roots and policies are small; nothing we read as a
# whole from a path the user names is larger than this.
USER_FILE_MAX_BYTES = 16 << 20


def read_user_file(path: str | Path, what: str, *, limit: int = USER_FILE_MAX_BYTES) -> bytes:
    """The bytes of a file the user named (a key, identity, PIN or policy file).

    A link is followed (the user chose it), but what it names must be a regular file:
    a FIFO would block the command forever, ``/dev/zero`` would never end. Missing
    files are "not found" (6); loops, folders and special files are usage errors (2).
    """
    try:
        with open_regular(path, what, error=UsageError, follow_links=True) as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise path_error(path, what) from exc
    if len(data) > limit:
        raise UsageError(
            f"{what} {path} is larger than {limit} bytes", details={"file": str(path), "reason": "too-large"}
        )
    return data


def check_folder_arg(path: str, what: str) -> str:
    """``path`` if it is (or can be created as) a local folder; else a usage error.

    ``--out`` or ``--ledger`` naming a file (or a path under one) is the caller's
    mistake, to be said as such (exit 2), not found later as an internal error.
    Remote URLs (``gs://``) are left to their filesystem.
    """
    _no_nul(path, what)
    if "://" in path and not path.startswith("file://"):
        return path
    local = Path(path.removeprefix("file://"))
    if len(os.fsencode(local)) >= 4096 or any(len(os.fsencode(part)) > 255 for part in local.parts):
        raise UsageError(f"{what} {path[:80]}... is too long a path", details={"reason": "name-too-long"})
    probe = local
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    try:
        info = os.stat(probe)
    except OSError as exc:
        raise path_error(probe, what) from exc
    if not stat.S_ISDIR(info.st_mode):
        where = "is" if probe == local else f"is under {probe}, which is"
        raise UsageError(
            f"{what} {path} {where} a {kind_of(info.st_mode)}, not a folder",
            details={"file": path, "reason": "not-a-folder"},
        )
    return path


def check_file_arg(path: str, what: str) -> str:
    """``path`` if a file can be written there: not a folder or special file, its folder a folder."""
    _no_nul(path, what)
    local = Path(path)
    try:
        info: os.stat_result | None = os.stat(local)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise path_error(local, what) from exc
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise UsageError(
            f"{what} {path} is a {kind_of(info.st_mode)}; name a file",
            details={"file": path, "reason": "not-regular-file"},
        )
    check_folder_arg(str(local.parent), f"the folder of {what}")
    return path


def path_error(path: str | Path, what: str) -> StellaError:
    """The error for a command-line path that cannot be used, saying why.

    A symlink loop or a dangling link is not "does not exist": the name is there.
    """
    if "\x00" in str(path):
        return UsageError(f"{what} {str(path)!r} contains a NUL character", details={"reason": "nul-in-path"})
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return UsageError(
                f"{what} {path} is a symlink loop", details={"file": str(path), "reason": "symlink-loop"}
            )
        if os.path.lexists(path):
            return UsageError(
                f"{what} {path} is a symlink to a missing target",
                details={"file": str(path), "reason": "dangling-symlink"},
            )
        if exc.errno == errno.EACCES:
            return UsageError(
                f"{what} {path} is not accessible", details={"file": str(path), "reason": "permission"}
            )
        if exc.errno == errno.ENAMETOOLONG:
            return UsageError(
                f"{what} {str(path)[:80]}... is too long a path", details={"reason": "name-too-long"}
            )
        if exc.errno == errno.ENOTDIR:
            return UsageError(
                f"{what} {path} goes through a file as if it were a folder",
                details={"file": str(path), "reason": "not-a-folder"},
            )
        return NotFoundError(f"{what} {path} does not exist", details={"file": str(path)})
    return UsageError(f"{what} {path} cannot be used here", details={"file": str(path)})
