"""What a Trivy profile's bundle carries beside the DB file, and the profile options.

Bundle layout (paths relative to the bundle root; ``<db>`` is ``db`` or ``java-db``)::

    data/<db>/trivy.db | trivy-java.db   the database, ready to copy into <cache>/<db>/
    data/<db>/metadata.json             DownloadedAt = UpdatedAt, see below
    data/db.tar.gz | javadb.tar.gz      the layer Trivy downloads: flat, deterministic
    data/oci/                           OCI image layout of the artifact (push it with
                                        ``stella export push``), tag 2 or 1
    data/reports/*.jsonl.zst            what was not exported, and why

Two ``metadata.json`` copies differ on purpose (see :func:`.artifact.trivy_metadata`):
the copy in ``data/<db>/`` is for placing straight into an air-gapped cache, so it
carries ``DownloadedAt`` = ``UpdatedAt`` (a real time, never the clock) and Trivy does
not declare it corrupted; the copy inside the layer carries the zero time, because
Trivy stamps ``DownloadedAt`` itself when it pulls.

``UpdatedAt`` is the export's ``generatedAt`` (the selected data's newest timestamp,
or ``--as-of``). ``NextUpdate`` defaults to ``UpdatedAt`` plus upstream's interval
(24 h for the vulnerability DB, 3 days for the Java DB) and is set with the profile
option ``next-update``: a duration (``36h``, ``7d``, ``1d12h``) after ``UpdatedAt``,
or an RFC 3339 time. An offline Trivy run without ``--skip-db-update`` keeps the DB
only while ``now < NextUpdate``, so choose it for how long the bundle will be in use.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import zstandard

from stella.adapters.trivy.artifact import (
    OCI_INDEX_MEDIA_TYPE,
    TRIVY_DB,
    TRIVY_JAVA_DB,
    TrivyArtifactSpec,
    format_go_time,
    trivy_metadata,
    write_deterministic_tar_gz,
    write_oci_layout,
)
from stella.bundle.manifest import ContentEntry
from stella.bundle.paths import OCI_DIR
from stella.documents.interface import normalize_time
from stella.errors import InputError, UsageError
from stella.timefmt import parse_duration

__all__ = [
    "JAVA_DB_LAYOUT",
    "TRIVY_DB_LAYOUT",
    "TrivyLayout",
    "TrivyOptions",
    "artifact_fields",
    "file_entry",
    "parse_trivy_options",
    "report_counts",
    "write_artifact_files",
]

_CREATED_ANNOTATION = "org.opencontainers.image.created"
_OCI_LAYOUT_MEDIA_TYPE = "application/vnd.oci.layout.header.v1+json"
# A NextUpdate further out than this is almost certainly a typo (or a DB nobody will refresh).
_MAX_VALIDITY = timedelta(days=3660)
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class TrivyLayout:
    """Where one Trivy artifact's files go in the bundle, and what they are."""

    spec: TrivyArtifactSpec
    db_dir: str
    tarball: str
    db_content_type: str
    default_validity: timedelta

    @property
    def db_path(self) -> str:
        return f"{self.db_dir}/{self.spec.db_file}"

    @property
    def metadata_path(self) -> str:
        return f"{self.db_dir}/metadata.json"


TRIVY_DB_LAYOUT = TrivyLayout(
    TRIVY_DB, "data/db", "data/db.tar.gz", "application/x-bbolt", timedelta(hours=24)
)
JAVA_DB_LAYOUT = TrivyLayout(
    TRIVY_JAVA_DB, "data/java-db", "data/javadb.tar.gz", "application/vnd.sqlite3", timedelta(days=3)
)


@dataclass(frozen=True, slots=True)
class TrivyOptions:
    """The Trivy profiles' options, validated before the pipeline is built."""

    next_update: str | None = None

    def next_update_after(self, updated_at: datetime, default: timedelta) -> datetime:
        """``NextUpdate`` for a DB updated at ``updated_at`` (see the module docstring)."""
        if self.next_update is None:
            return updated_at + default
        delta = parse_duration(self.next_update)
        if delta is not None:
            return updated_at + delta
        moment = normalize_time(self.next_update, field="next-update")
        assert moment is not None
        return datetime.fromisoformat(moment)


def parse_trivy_options(options: Mapping[str, Any]) -> TrivyOptions:
    """Validate the values of the request's profile options (keys as the manifest records them).

    Which keys exist is checked once for every profile, by
    :func:`stella.profiles.parse_profile_options`.

    Raises:
        UsageError: a ``nextUpdate`` that is neither a duration nor an RFC 3339 time,
            or a duration of more than ten years.
    """
    if options.get("nextUpdate") is None:
        return TrivyOptions()
    text = str(options["nextUpdate"])
    delta = parse_duration(text)
    if delta is not None and delta > _MAX_VALIDITY:
        raise UsageError(f"next-update={text!r} is more than ten years", details={"nextUpdate": text})
    if delta is None:
        try:
            normalize_time(text, field="next-update")
        except InputError as exc:
            raise UsageError(
                f"next-update={text!r}: use a duration such as 24h, 7d or 1d12h, or an RFC 3339 time",
                details={"nextUpdate": text},
            ) from exc
    return TrivyOptions(text)


def file_entry(root: Path, relative: str, content_type: str, records: int | None = None) -> ContentEntry:
    """The manifest entry of a file already written under ``root``."""
    digest = hashlib.sha256()
    size = 0
    with (root / relative).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return ContentEntry(relative, "sha256:" + digest.hexdigest(), size, records, content_type)


def _oci_entries(root: Path, layout: TrivyLayout) -> list[ContentEntry]:
    """Entries for every file of the OCI layout, typed by the descriptors that name them."""
    oci = root / OCI_DIR
    types = {"index.json": OCI_INDEX_MEDIA_TYPE, "oci-layout": _OCI_LAYOUT_MEDIA_TYPE}
    index = json.loads((oci / "index.json").read_bytes())
    for descriptor in index["manifests"]:
        types[_blob(descriptor["digest"])] = descriptor["mediaType"]
        manifest = json.loads((oci / _blob(descriptor["digest"])).read_bytes())
        for child in [manifest["config"], *manifest["layers"]]:
            types[_blob(child["digest"])] = child["mediaType"]
    found = sorted(p.relative_to(oci).as_posix() for p in oci.rglob("*") if p.is_file())
    return [
        file_entry(root, f"{OCI_DIR}/{name}", types.get(name, "application/octet-stream")) for name in found
    ]


def _blob(digest: str) -> str:
    return "blobs/sha256/" + digest.split(":", 1)[1]


def write_artifact_files(
    root: Path, layout: TrivyLayout, *, updated_at: datetime, next_update: datetime, threads: int = 1
) -> list[ContentEntry]:
    """Write metadata, tarball and OCI layout for the DB already at ``root/layout.db_path``.

    ``threads`` compress the tarball (the run's worker count; the bytes do not depend
    on it). Safe to rerun (a retried pipeline step): earlier outputs are replaced.

    Raises:
        UsageError: ``next_update`` precedes ``updated_at``.
    """
    spec = layout.spec
    version = spec.schema_version
    cache_copy = trivy_metadata(updated_at, next_update, updated_at, schema_version=version)
    layer_copy = trivy_metadata(updated_at, next_update, None, schema_version=version)
    (root / layout.metadata_path).write_bytes(cache_copy)
    write_deterministic_tar_gz(
        root / layout.tarball,
        [(spec.db_file, root / layout.db_path), ("metadata.json", layer_copy)],
        threads=threads,
    )
    shutil.rmtree(root / OCI_DIR, ignore_errors=True)
    write_oci_layout(
        root / OCI_DIR,
        layer_path=root / layout.tarball,
        layer_media_type=spec.layer_media_type,
        title=spec.title,
        annotations={_CREATED_ANNOTATION: format_go_time(updated_at)},
        tag=spec.tag,
    )
    return [
        file_entry(root, layout.metadata_path, "application/json"),
        file_entry(root, layout.tarball, spec.layer_media_type),
        *_oci_entries(root, layout),
    ]


def report_counts(root: Path, relative: str, *, field: str = "reason") -> dict[str, int]:
    """Lines per value of ``field`` in a ``.jsonl.zst`` report: the manifest's summary of it.

    Counting the written file (rather than carrying counts beside it) makes the manifest
    agree with the report by construction.
    """
    counts: Counter[str] = Counter()
    with (root / relative).open("rb") as handle:
        text = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(handle), encoding="utf-8")
        for line in text:
            counts[str(json.loads(line)[field])] += 1
    return dict(sorted(counts.items()))


def artifact_fields(
    root: Path,
    layout: TrivyLayout,
    contents: Sequence[ContentEntry],
    *,
    updated_at: datetime,
    next_update: datetime,
) -> dict[str, Any]:
    """The manifest's ``trivy`` object: what a consumer or a verifier wants without unpacking."""
    index = json.loads((root / OCI_DIR / "index.json").read_bytes())
    db_entry = next(c for c in contents if c.path == layout.db_path)
    return {
        "dbFile": layout.db_path,
        "entries": db_entry.records,
        "metadata": {
            "Version": layout.spec.schema_version,
            "UpdatedAt": format_go_time(updated_at),
            "NextUpdate": format_go_time(next_update),
        },
        "oci": {
            "layout": OCI_DIR,
            "tag": layout.spec.tag,
            "layerMediaType": layout.spec.layer_media_type,
            "manifestDigest": index["manifests"][0]["digest"],
        },
    }
