"""File access for ledgers and bundles, local or ``gs://``, through Beam's FileSystems.

Beam's ``FileSystems`` is the one storage abstraction that every runner already ships
(local disk, GCS, S3, HDFS), so the ledger code reads ``gs://bucket/ledger`` exactly as
it reads ``~/.stella/ledger``. This module is the only place that talks to it, which
keeps the quirks (local parents must exist; GCS has no directories) in one spot.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, BinaryIO

__all__ = [
    "HashingWriter",
    "TEMP_MARK",
    "atomic_local",
    "download_tree",
    "exists",
    "fsync_dir",
    "is_remote",
    "open_atomic",
    "owned_name",
    "remove_stale",
    "join",
    "list_files",
    "local_folder_for",
    "open_read",
    "open_write",
    "read_bytes",
    "remove",
    "remove_tree",
    "rename",
    "stale_temp_files",
    "temp_owner",
    "upload_tree",
    "write_atomic",
]

# Beam's import logs an 'apitools not found' warning through the root logger; with no
# root handler Python would print it on every CLI run. A NullHandler keeps stderr clean
# without touching the configuration of anyone who embeds us and has handlers already.
if not logging.getLogger().handlers:
    logging.getLogger().addHandler(logging.NullHandler())


def _filesystems() -> Any:
    """Beam's FileSystems, imported at the first remote path.

    Importing Beam costs most of a second of CPU; a command that only touches local
    paths (``stella ledger ingest`` of a local ledger) never pays it.
    """
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def _uncompressed() -> Any:
    from apache_beam.io.filesystem import CompressionTypes

    return CompressionTypes.UNCOMPRESSED


# Temp files and staging folders carry this mark and the writer's pid.
TEMP_MARK = ".tmp-"


def is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _local(path: str) -> str:
    return path[len("file://") :] if path.startswith("file://") else path


def join(base: str, *parts: str) -> str:
    if is_remote(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return os.path.join(_local(base), *parts)


def open_read(path: str) -> IO[bytes]:
    if not is_remote(path):
        return open(_local(path), "rb")
    handle: Any = _filesystems().open(path, compression_type=_uncompressed())
    return handle  # type: ignore[no-any-return]


def open_write(path: str) -> IO[bytes]:
    if not is_remote(path):
        local = _local(path)
        os.makedirs(os.path.dirname(local) or ".", exist_ok=True)
        return open(local, "wb")
    handle: Any = _filesystems().create(path, compression_type=_uncompressed())
    return handle  # type: ignore[no-any-return]


def exists(path: str) -> bool:
    if not is_remote(path):
        return os.path.exists(_local(path))
    return bool(_filesystems().exists(path))


def rename(source: str, destination: str) -> None:
    if not is_remote(source):
        os.replace(_local(source), _local(destination))
        return
    _filesystems().rename([source], [destination])


def remove(path: str) -> None:
    if not is_remote(path):
        if os.path.exists(_local(path)):
            os.remove(_local(path))
        return
    if _filesystems().exists(path):
        _filesystems().delete([path])


def read_bytes(path: str) -> bytes:
    with open_read(path) as handle:
        return handle.read()


def list_files(prefix: str, suffix: str) -> list[str]:
    """Files directly or indirectly under ``prefix`` whose names end with ``suffix``, sorted."""
    if not is_remote(prefix):
        root = _local(prefix)
        found: list[str] = []
        for directory, _dirs, files in os.walk(root):
            found.extend(os.path.join(directory, f) for f in files if f.endswith(suffix))
        return sorted(found)
    results = _filesystems().match([join(prefix, "**")])
    return sorted(m.path for m in results[0].metadata_list if m.path.endswith(suffix))


class HashingWriter:
    """A write-only file that hashes and counts what passes through to ``sink``.

    Digests and sizes are taken on the way to storage, so nothing written is ever read
    back just to be hashed (segments, shards, archives, intermediate runs).
    """

    def __init__(self, sink: IO[bytes] | BinaryIO, *, hashing: bool = True) -> None:
        self._sink = sink
        self._hash = hashlib.sha256() if hashing else None
        self.size = 0

    def write(self, data: bytes) -> int:
        if self._hash is not None:
            self._hash.update(data)
        self.size += len(data)
        self._sink.write(data)
        return len(data)

    def flush(self) -> None:
        self._sink.flush()

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        """Bytes written so far: the position writers that ask for one (pyarrow) need."""
        return self.size

    @property
    def closed(self) -> bool:
        return bool(getattr(self._sink, "closed", False))

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of everything written so far."""
        if self._hash is None:
            raise ValueError("this writer was created with hashing=False")
        return "sha256:" + self._hash.hexdigest()


def fsync_dir(directory: str | Path) -> None:
    """Make a rename or a new name in ``directory`` durable (a power cut keeps it)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_local(destination: Path) -> Iterator[BinaryIO]:
    """A temp file beside ``destination``, renamed over it only if the block succeeds.

    Whatever is written this way is either complete under its final name or absent: a
    crash, or an error found only at the end of a stream (a truncated ciphertext), never
    leaves a partial file that looks finished. The order is what survives a power cut:
    write the temp file, fsync it, rename it, fsync the folder (without the last step
    the rename itself may be lost; without the first the new name may point at zeros).
    Leftover temp files are named ``.<name>.tmp-<pid>-<random>`` so that a later run can
    tell whether the process that made them is still alive (:func:`stale_temp_files`).
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(
        prefix=f".{destination.name}{TEMP_MARK}{os.getpid()}-", dir=destination.parent
    )
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, destination)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    fsync_dir(destination.parent)


def write_atomic(path: str, data: bytes) -> None:
    """Write a whole file atomically (and durably, when local): complete or absent."""
    with open_atomic(path) as handle:
        handle.write(data)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_owner(name: str, marker: str = TEMP_MARK) -> int | None:
    """The pid embedded after ``marker`` in a temp or staging name made by this project."""
    _, found, rest = name.rpartition(marker)
    pid = rest.split("-", 1)[0]
    return int(pid) if found and pid.isdigit() else None


def owned_name(prefix: str) -> str:
    """``<prefix><pid>-<random>``: a temp or staging name a later run can attribute."""
    return f"{prefix}{os.getpid()}-{uuid.uuid4().hex}"


def stale_temp_files(directory: Path, marker: str = TEMP_MARK) -> list[Path]:
    """Temp files or staging folders in ``directory`` whose owning process is gone.

    Only names carrying ``marker`` followed by a pid are considered; one owned by a live
    process (another run in progress) is left alone.
    """
    if not directory.is_dir():
        return []
    stale = []
    for entry in sorted(directory.iterdir()):
        owner = temp_owner(entry.name, marker)
        if owner is not None and owner != os.getpid() and not _pid_alive(owner):
            stale.append(entry)
    return stale


def remove_stale(directory: Path, marker: str = TEMP_MARK) -> list[str]:
    """Delete what :func:`stale_temp_files` finds; return the names removed."""
    removed = []
    for entry in stale_temp_files(directory, marker):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry.name)
    return removed


@contextmanager
def open_atomic(path: str) -> Iterator[IO[bytes]]:
    """A file that appears under ``path`` complete, or not at all.

    Local: :func:`atomic_local` (fsync, rename, folder fsync). Remote: object stores
    publish an object only when its upload completes, so it is written in place.
    """
    if is_remote(path):
        with open_write(path) as handle:
            yield handle
        return
    with atomic_local(Path(_local(path))) as local:
        yield local


_COPY_CHUNK = 1 << 20


def _relative(prefix: str, path: str) -> str:
    base = prefix.rstrip("/") + "/" if is_remote(prefix) else os.path.join(_local(prefix), "")
    if not path.startswith(base):
        raise ValueError(f"{path} is not under {prefix}")
    return path[len(base) :].replace(os.sep, "/")


def _copy(source: str, destination: str) -> None:
    with open_read(source) as reader, open_write(destination) as writer:
        shutil.copyfileobj(reader, writer, _COPY_CHUNK)


def upload_tree(source: Path, prefix: str) -> list[str]:
    """Copy every file under the local folder ``source`` to ``prefix``; their relative paths, sorted."""
    names = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
    for name in names:
        _copy(str(source / name), join(prefix, *name.split("/")))
    return names


def download_tree(prefix: str, destination: Path, *, skip: str | None = None) -> list[str]:
    """Copy every file under ``prefix`` (but not under its subfolder ``skip``) into ``destination``.

    How the driver gathers a payload the workers wrote to shared storage: names are
    taken relative to ``prefix``, and one that would escape ``destination`` is refused.
    """
    names = []
    for path in list_files(prefix, ""):
        name = _relative(prefix, path)
        if skip is not None and (name == skip or name.startswith(skip.rstrip("/") + "/")):
            continue
        target = (destination / name).resolve()
        if not target.is_relative_to(destination.resolve()) or ".." in name.split("/"):
            raise ValueError(f"{path} would land outside {destination}")
        _copy(path, str(target))
        names.append(name)
    return names


def remove_tree(prefix: str) -> None:
    """Delete every file under ``prefix`` (and, locally, the folder itself)."""
    if not is_remote(prefix):
        shutil.rmtree(_local(prefix), ignore_errors=True)
        return
    paths = list_files(prefix, "")
    if paths:
        _filesystems().delete(paths)


@contextmanager
def local_folder_for(root: str) -> Iterator[Path]:
    """A local folder whose files end up under ``root`` if the block succeeds.

    Some outputs can only be built on a local disk (SQLite, the bbolt writer, tar and
    OCI layouts that are hashed and re-read). On a local ``root`` that is ``root``
    itself; on shared storage it is a private temp folder of *this worker* (its own
    TMPDIR, never the driver's), uploaded to ``root`` and removed after the block.
    """
    if not is_remote(root):
        os.makedirs(_local(root), exist_ok=True)
        yield Path(_local(root))
        return
    with tempfile.TemporaryDirectory(prefix="stella-step-") as scratch:
        yield Path(scratch)
        upload_tree(Path(scratch), root)
