"""The transport shapes of the Trivy DBs: ``metadata.json``, the ``.tar.gz`` layer, the OCI layout.

Trivy fetches its DBs as OCI artifacts whose single layer is a gzip tar holding the
database file and ``metadata.json`` at the top level (research ``trivy-formats.md``
§C.5). Every byte written here is a function of the inputs: no wall clock, no uid/gid,
no user names, no file-system order, no gzip name or time, no thread count. Building the same DB twice
therefore gives the same layer digest and the same manifest digest, which is what lets
a mirror prove that the artifact it serves is the one that was signed.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from stella import canonical, storage, timefmt
from stella.errors import ConflictError, UsageError
from stella.gzipstream import BLOCK_SIZE, open_gzip_writer

__all__ = [
    "OCI_EMPTY_JSON",
    "OCI_INDEX_MEDIA_TYPE",
    "OCI_LAYOUT_VERSION",
    "OCI_MANIFEST_MEDIA_TYPE",
    "TITLE_ANNOTATION",
    "TRIVY_CONFIG_MEDIA_TYPE",
    "TRIVY_DB",
    "TRIVY_DB_LAYER_MEDIA_TYPE",
    "TRIVY_JAVA_DB",
    "TRIVY_JAVA_DB_LAYER_MEDIA_TYPE",
    "OciDescriptor",
    "TrivyArtifactSpec",
    "format_go_time",
    "trivy_metadata",
    "write_deterministic_tar_gz",
    "write_oci_layout",
]

logger = logging.getLogger(__name__)

TRIVY_DB_LAYER_MEDIA_TYPE = "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip"
TRIVY_JAVA_DB_LAYER_MEDIA_TYPE = "application/vnd.aquasec.trivy.javadb.layer.v1.tar+gzip"
# Upstream pushes with ``oras push --artifact-type`` this value; Trivy never fetches the
# config blob, so the value is informational, but registries and UIs show it.
TRIVY_CONFIG_MEDIA_TYPE = "application/vnd.aquasec.trivy.config.v1+json"
OCI_MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
OCI_LAYOUT_VERSION = "1.0.0"
TITLE_ANNOTATION = "org.opencontainers.image.title"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
# The config blob: an empty JSON object, as oras writes for artifacts without a config.
OCI_EMPTY_JSON = b"{}"

# Go's zero ``time.Time``; Trivy reads it as "never downloaded".
_GO_ZERO_TIME = "0001-01-01T00:00:00Z"
# Names inside the layer must be plain ustar names: Trivy extracts into its cache dir,
# so anything with a directory part would be a path-traversal hazard on our side too.
_MAX_MEMBER_NAME = 100
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class TrivyArtifactSpec:
    """What distinguishes the two Trivy artifacts on the wire (research §C.5, §D.3)."""

    layer_media_type: str
    title: str
    tag: str
    schema_version: int
    db_file: str


TRIVY_DB = TrivyArtifactSpec(TRIVY_DB_LAYER_MEDIA_TYPE, "db.tar.gz", "2", 2, "trivy.db")
TRIVY_JAVA_DB = TrivyArtifactSpec(TRIVY_JAVA_DB_LAYER_MEDIA_TYPE, "javadb.tar.gz", "1", 1, "trivy-java.db")


@dataclass(frozen=True, slots=True)
class OciDescriptor:
    """An OCI content descriptor (image-spec ``descriptor.md``)."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


def format_go_time(moment: datetime) -> str:
    """RFC 3339 in UTC, as Go's ``time.Time`` marshals it (fraction only when non-zero).

    Raises:
        UsageError: the datetime is naive; guessing a zone would make the bytes depend
            on the machine that built them.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise UsageError("Trivy metadata times must be timezone-aware", details={"value": moment.isoformat()})
    return timefmt.format_go_time(moment)


def trivy_metadata(
    updated_at: datetime,
    next_update: datetime,
    downloaded_at: datetime | None,
    *,
    schema_version: int = TRIVY_DB.schema_version,
) -> bytes:
    """The ``metadata.json`` that sits beside ``trivy.db`` (or ``trivy-java.db`` with version 1).

    ``downloaded_at`` decides what an air-gapped Trivy does with a DB copied straight into
    its cache (research §C.2): with a zero ``DownloadedAt`` Trivy declares the DB "may be
    corrupted" and re-downloads it unless ``--skip-db-update`` is given, which offline
    fails. So the copy we place into a cache directory carries a real time (the
    export's as-of, never the wall clock), and Trivy then keeps it while
    ``now < NextUpdate`` or for an hour after ``DownloadedAt``. The copy inside the OCI
    layer passes ``None`` -- the zero time, as upstream publishes -- because Trivy
    stamps ``DownloadedAt`` itself after pulling, and a build-time value there would only
    pretend to know when the consumer downloaded it.

    Raises:
        UsageError: a naive datetime, or ``next_update`` before ``updated_at``.
    """
    updated, upcoming = format_go_time(updated_at), format_go_time(next_update)  # rejects naive times
    if next_update < updated_at:
        raise UsageError(
            "NextUpdate must not precede UpdatedAt", details={"updatedAt": updated, "nextUpdate": upcoming}
        )
    value = {
        "Version": schema_version,
        "NextUpdate": upcoming,
        "UpdatedAt": updated,
        "DownloadedAt": _GO_ZERO_TIME if downloaded_at is None else format_go_time(downloaded_at),
    }
    return canonical.dumps(value)


class _HashingWriter(io.RawIOBase):
    """Counts and hashes what passes through, so a digest costs no second read."""

    def __init__(self, sink: IO[bytes]) -> None:
        super().__init__()
        self._sink = sink
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._sink.write(view)
        self.hash.update(view)
        self.size += len(view)
        return len(view)


def _validate_member_name(name: str) -> None:
    bad = (
        not name
        or name in {".", ".."}
        or "/" in name
        or "\\" in name
        or "\x00" in name
        or len(name.encode("utf-8")) > _MAX_MEMBER_NAME
    )
    if bad:
        raise UsageError(
            "tar member names must be plain file names of at most 100 bytes",
            details={"name": name},
        )


def write_deterministic_tar_gz(
    out_path: Path | str,
    members: Sequence[tuple[str, Path | bytes]],
    *,
    mtime: int = 0,
    threads: int = 1,
) -> str:
    """Write a flat ``.tar.gz`` whose bytes depend only on member names and contents.

    Members are sorted by UTF-8 name; headers are ustar (so no PAX records can carry
    times), uid/gid 0 with empty owner names, mode 0644 and a fixed ``mtime``. Files
    are streamed, never loaded whole. The gzip stream is :mod:`stella.gzipstream`'s:
    ``threads`` (the run's worker count) compress it in parallel, and the bytes are
    the same for any number of them.

    Returns:
        ``sha256:<hex>`` of the written archive.

    Raises:
        UsageError: a name is not a plain file name, or occurs twice.
    """
    out = Path(out_path)
    names = [name for name, _ in members]
    for name in names:
        _validate_member_name(name)
    if len(set(names)) != len(names):
        raise UsageError("duplicate tar member names", details={"names": sorted(names)})
    ordered = sorted(members, key=lambda item: item[0].encode("utf-8"))
    with storage.atomic_local(out) as handle:
        hashing = _HashingWriter(handle)
        # Plain "w" mode (not the "w|" stream) so tarfile copies files in whole
        # compressor blocks; the archive bytes are the same either way.
        with (
            open_gzip_writer(hashing, threads=threads) as gz,
            tarfile.TarFile(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT, copybufsize=BLOCK_SIZE) as tar,
        ):
            for name, source in ordered:
                info = tarfile.TarInfo(name)
                info.mode = 0o644
                info.mtime = mtime
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.type = tarfile.REGTYPE
                if isinstance(source, bytes):
                    info.size = len(source)
                    tar.addfile(info, io.BytesIO(source))
                else:
                    with Path(source).open("rb") as src:
                        info.size = os.fstat(src.fileno()).st_size
                        tar.addfile(info, src)
        digest = "sha256:" + hashing.hash.hexdigest()
    out.chmod(0o644)  # published like the bundle's other files (the temp file was private)
    logger.debug("wrote %s (%s)", out.name, digest)
    return digest


def _copy_hashing(source: Path, dest_dir: Path) -> tuple[str, int]:
    """Copy ``source`` into ``dest_dir`` under its sha256 name; return (digest, size)."""
    hasher = hashlib.sha256()
    tmp = dest_dir / ".incoming"
    size = 0
    with source.open("rb") as src, tmp.open("wb") as dst:
        while chunk := src.read(_COPY_CHUNK):
            hasher.update(chunk)
            dst.write(chunk)
            size += len(chunk)
    hex_digest = hasher.hexdigest()
    os.chmod(tmp, 0o644)
    os.replace(tmp, dest_dir / hex_digest)
    return "sha256:" + hex_digest, size


def _put_blob(dest_dir: Path, data: bytes) -> tuple[str, int]:
    hex_digest = hashlib.sha256(data).hexdigest()
    path = dest_dir / hex_digest
    path.write_bytes(data)
    os.chmod(path, 0o644)
    return "sha256:" + hex_digest, len(data)


def write_oci_layout(
    layout_dir: Path | str,
    *,
    layer_path: Path | str,
    layer_media_type: str,
    config_media_type: str = TRIVY_CONFIG_MEDIA_TYPE,
    title: str,
    annotations: Mapping[str, str] | None = None,
    tag: str,
) -> OciDescriptor:
    """Write an OCI image layout holding one single-layer artifact manifest, tagged ``tag``.

    The shape is the one Trivy accepts (research §C.5): exactly one layer of
    ``layer_media_type`` with the ``org.opencontainers.image.title`` annotation, and a
    config blob ``{}`` typed ``config_media_type`` (the legacy artifact shape upstream
    pushes). Manifest and index are canonical JSON, and no ``created`` time is added:
    pass one in ``annotations`` (from the export's as-of) if you want it.

    The layout is built in a sibling staging folder and published by one rename, so a
    crash never leaves a layout that looks complete.

    Returns:
        The manifest's descriptor (as listed in ``index.json``).

    Raises:
        ConflictError: ``layout_dir`` already exists.
        UsageError: an empty title or tag, or a title that is not a plain file name.
    """
    target = Path(layout_dir)
    layer = Path(layer_path)
    _validate_member_name(title)
    if not tag or len(tag) > 128:
        raise UsageError("an OCI tag must have 1 to 128 characters", details={"tag": tag})
    if target.exists():
        raise ConflictError("the OCI layout folder already exists", details={"path": target.name})
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        blobs = staging / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        layer_digest, layer_size = _copy_hashing(layer, blobs)
        config_digest, config_size = _put_blob(blobs, OCI_EMPTY_JSON)
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST_MEDIA_TYPE,
            "config": OciDescriptor(config_media_type, config_digest, config_size).to_json(),
            "layers": [
                OciDescriptor(layer_media_type, layer_digest, layer_size, {TITLE_ANNOTATION: title}).to_json()
            ],
        }
        if annotations:
            manifest["annotations"] = dict(annotations)
        manifest_digest, manifest_size = _put_blob(blobs, canonical.dumps(manifest))
        descriptor = OciDescriptor(
            OCI_MANIFEST_MEDIA_TYPE, manifest_digest, manifest_size, {REF_NAME_ANNOTATION: tag}
        )
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX_MEDIA_TYPE, "manifests": [descriptor.to_json()]}
        (staging / "index.json").write_bytes(canonical.dumps(index))
        (staging / "oci-layout").write_bytes(canonical.dumps({"imageLayoutVersion": OCI_LAYOUT_VERSION}))
        for path in (staging / "index.json", staging / "oci-layout"):
            os.chmod(path, 0o644)
        for folder in (staging, staging / "blobs", blobs):
            os.chmod(folder, 0o755)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return descriptor
