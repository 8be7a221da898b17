"""The Trivy Java DB (``trivy-java.db``, schema 1): jar SHA-1 -> Maven coordinates.

Trivy identifies a jar that carries no ``pom.properties`` by looking its SHA-1 up in this
SQLite file (research ``trivy-formats.md`` §D, §E.3); the coordinates it finds are then
matched against the ``maven::`` advisory buckets of ``trivy.db``. The Java DB holds no
vulnerability data. We build it from SBOM components that declare a Maven purl *and* the
SHA-1 of the jar, which is exactly the evidence the lookup needs.

Determinism: rows are deduplicated and sorted before insertion, ids are assigned in that
order, the page size and journal mode are fixed and the file is VACUUMed, so the same row
set gives the same bytes for the same SQLite library (its version number is in the file
header: record ``JavaDbStats.sqlite_version`` beside the digest).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote

from stella.adapters.trivy.artifact import TRIVY_JAVA_DB, trivy_metadata
from stella.errors import UsageError
from stella.model import DocFormat
from stella.storage import atomic_local

__all__ = [
    "JAVA_DB_FILE",
    "JAVA_DB_SCHEMA_VERSION",
    "MAX_COMPONENTS",
    "JavaDbStats",
    "JavaIndexRow",
    "SkippedComponent",
    "java_db_metadata",
    "java_index_rows",
    "write_java_db",
]

logger = logging.getLogger(__name__)

JAVA_DB_FILE = TRIVY_JAVA_DB.db_file
JAVA_DB_SCHEMA_VERSION = TRIVY_JAVA_DB.schema_version
# Upstream publishes a new Java DB every few days and writes NextUpdate = build + 3 days.
_DEFAULT_JAVA_DB_VALIDITY = timedelta(days=3)

# The DDL upstream trivy-java-db uses (same names: Trivy's queries join on them).
_SCHEMA = (
    "CREATE TABLE artifacts(id INTEGER PRIMARY KEY, group_id TEXT, artifact_id TEXT)",
    "CREATE TABLE indices(artifact_id INTEGER, version TEXT, sha1 BLOB, archive_type TEXT, "
    "foreign key (artifact_id) references artifacts(id))",
)
_INDEXES = (
    "CREATE UNIQUE INDEX artifacts_idx ON artifacts(artifact_id, group_id)",
    "CREATE INDEX indices_artifact_idx ON indices(artifact_id)",
    "CREATE UNIQUE INDEX indices_sha1_idx ON indices(sha1)",
)
_PAGE_SIZE = 4096

# Maven artifact types whose file is a ``.jar`` (Maven's own artifact handlers plus the
# Felix ``bundle`` packaging). Trivy hashes every ``.jar`` it finds, so these are the
# types whose SBOM SHA-1 can ever equal what Trivy computes; a ``pom`` or ``war`` hash
# never will, and ``archive_type`` other than ``jar`` is never queried.
_JAR_TYPES = frozenset(
    {"jar", "bundle", "test-jar", "maven-plugin", "ejb", "ejb-client", "java-source", "javadoc"}
)
_SHA1_HEX = re.compile(r"[0-9a-fA-F]{40}")
_CYCLONEDX_FORMATS = frozenset({DocFormat.CYCLONEDX.value, DocFormat.CYCLONEDX_VEX.value})
# An SBOM is untrusted input: bound the number of components we walk so a hostile
# document cannot make one export run unboundedly long.
MAX_COMPONENTS = 1_000_000


@dataclass(frozen=True, slots=True, order=True)
class JavaIndexRow:
    """One ``indices`` row with its artifact: a jar's SHA-1 and its Maven coordinates."""

    group_id: str
    artifact_id: str
    version: str
    sha1: bytes
    archive_type: str = "jar"

    def __post_init__(self) -> None:
        if len(self.sha1) != 20:
            raise UsageError("a Java DB SHA-1 must be 20 raw bytes", details={"length": len(self.sha1)})
        if not (self.group_id and self.artifact_id and self.version and self.archive_type):
            # Trivy scans these columns into Go strings: a NULL or empty value breaks lookups.
            raise UsageError(
                "Java DB rows need group, artifact, version and archive type",
                details={"group": self.group_id, "artifact": self.artifact_id, "version": self.version},
            )


class SkippedComponent(NamedTuple):
    """Why an SBOM component produced no Java DB row (``reason`` is a stable code)."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class JavaDbStats:
    """What ``write_java_db`` wrote; ``digest``/``bytes`` describe the file itself."""

    artifacts: int
    indices: int
    duplicates: int
    sha1_conflicts: tuple[JavaIndexRow, ...]
    bytes: int
    digest: str
    sqlite_version: str


class _MavenPurl(NamedTuple):
    group: str
    artifact: str
    version: str
    qualifiers: Mapping[str, str]


def _parse_maven_purl(purl: str) -> _MavenPurl | SkippedComponent:
    """Parse ``pkg:maven/<group>/<artifact>@<version>?<qualifiers>#<subpath>`` (purl spec)."""
    text = purl.strip()
    scheme, sep, rest = text.partition(":")
    if not sep or scheme.lower() != "pkg":
        return SkippedComponent("not-a-purl", purl)
    rest = rest.lstrip("/")
    rest = rest.split("#", 1)[0]
    rest, _, query = rest.partition("?")
    purl_type, _, path = rest.partition("/")
    if purl_type.lower() != "maven":
        return SkippedComponent("not-maven", purl)
    path, at, version = path.rpartition("@")
    if not at:
        return SkippedComponent("no-version", purl)
    segments = [segment for segment in path.split("/") if segment]
    if len(segments) != 2:
        return SkippedComponent("malformed-purl", purl)
    group, artifact = (unquote(segment) for segment in segments)
    version = unquote(version)
    qualifiers: dict[str, str] = {}
    for pair in filter(None, query.split("&")):
        key, _, value = pair.partition("=")
        qualifiers[key.lower()] = unquote(value)
    if not (group and artifact and version):
        return SkippedComponent("malformed-purl", purl)
    return _MavenPurl(group, artifact, version, qualifiers)


def _rows_for(
    purls: Iterable[str], sha1_values: Iterable[str], where: str
) -> tuple[list[JavaIndexRow], list[SkippedComponent]]:
    maven: list[_MavenPurl] = []
    skipped: list[SkippedComponent] = []
    purl_list = sorted(set(purls))
    if not purl_list:
        return [], [SkippedComponent("no-purl", where)]
    for purl in purl_list:
        parsed = _parse_maven_purl(purl)
        if isinstance(parsed, SkippedComponent):
            skipped.append(parsed)
            continue
        archive = parsed.qualifiers.get("type", "jar").lower()
        if archive not in _JAR_TYPES:
            skipped.append(SkippedComponent("not-a-jar", f"{purl} (type {archive})"))
            continue
        maven.append(parsed)
    if not maven:
        return [], skipped
    hashes = sorted({value.strip().lower() for value in sha1_values})
    if not hashes:
        return [], [SkippedComponent("no-sha1", purl_list[0])]
    malformed = [value for value in hashes if not _SHA1_HEX.fullmatch(value)]
    if malformed:
        return [], [SkippedComponent("malformed-sha1", f"{purl_list[0]}: {malformed[0][:64]!r}")]
    if len(hashes) > 1:
        return [], [SkippedComponent("conflicting-sha1", f"{purl_list[0]}: {', '.join(hashes)}")]
    digest = bytes.fromhex(hashes[0])
    rows = [JavaIndexRow(p.group, p.artifact, p.version, digest, "jar") for p in maven]
    return rows, skipped


def _cyclonedx_components(document: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every component, nested ones and ``metadata.component`` included, in document order."""
    stack: list[Any] = []
    components = document.get("components")
    if isinstance(components, list):
        stack.extend(reversed(components))
    metadata = document.get("metadata")
    if isinstance(metadata, Mapping) and isinstance(metadata.get("component"), Mapping):
        stack.append(metadata["component"])
    seen = 0
    while stack:
        item = stack.pop()
        if type(item) is not dict and not isinstance(item, Mapping):
            continue
        seen += 1
        if seen > MAX_COMPONENTS:
            raise UsageError("SBOM has too many components", details={"limit": MAX_COMPONENTS})
        yield item
        nested = item.get("components")
        if isinstance(nested, list):
            stack.extend(reversed(nested))


def _strings(values: Iterable[Any]) -> list[str]:
    return [value for value in values if isinstance(value, str)]


def _cyclonedx_rows(document: Mapping[str, Any]) -> tuple[list[JavaIndexRow], list[SkippedComponent]]:
    rows: list[JavaIndexRow] = []
    skipped: list[SkippedComponent] = []
    for component in _cyclonedx_components(document):
        purl = component.get("purl")
        where = str(component.get("bom-ref") or component.get("name") or "<unnamed component>")
        hashes = component.get("hashes")
        sha1 = _strings(
            entry.get("content")
            for entry in (hashes if isinstance(hashes, list) else [])
            if (type(entry) is dict or isinstance(entry, Mapping))
            and str(entry.get("alg", "")).upper().replace("-", "") == "SHA1"
        )
        found, why = _rows_for(_strings([purl]), sha1, where)
        rows.extend(found)
        skipped.extend(why)
    return rows, skipped


def _spdx_rows(document: Mapping[str, Any]) -> tuple[list[JavaIndexRow], list[SkippedComponent]]:
    rows: list[JavaIndexRow] = []
    skipped: list[SkippedComponent] = []
    packages = document.get("packages")
    for package in packages if isinstance(packages, list) else []:
        if type(package) is not dict and not isinstance(package, Mapping):
            continue
        where = str(package.get("SPDXID") or package.get("name") or "<unnamed package>")
        refs = package.get("externalRefs")
        purls = _strings(
            ref.get("referenceLocator")
            for ref in (refs if isinstance(refs, list) else [])
            if (type(ref) is dict or isinstance(ref, Mapping))
            and str(ref.get("referenceType", "")).lower() == "purl"
        )
        checksums = package.get("checksums")
        sha1 = _strings(
            entry.get("checksumValue")
            for entry in (checksums if isinstance(checksums, list) else [])
            if (type(entry) is dict or isinstance(entry, Mapping))
            and str(entry.get("algorithm", "")).upper().replace("-", "") == "SHA1"
        )
        found, why = _rows_for(purls, sha1, where)
        rows.extend(found)
        skipped.extend(why)
    return rows, skipped


def java_index_rows(
    document: Mapping[str, Any], fmt: str
) -> tuple[list[JavaIndexRow], list[SkippedComponent]]:
    """Java DB rows from one CycloneDX or SPDX JSON SBOM, and why the other components gave none.

    A row needs a ``pkg:maven`` purl whose packaging is a jar and exactly one well-formed
    SHA-1: the hash is the only key Trivy looks up, so a component without one can never
    match and a component with two different ones is ambiguous evidence.

    Raises:
        UsageError: ``fmt`` is not an SBOM format, or the SBOM exceeds ``MAX_COMPONENTS``.
    """
    if fmt in _CYCLONEDX_FORMATS:
        rows, skipped = _cyclonedx_rows(document)
    elif fmt == DocFormat.SPDX.value:
        rows, skipped = _spdx_rows(document)
    else:
        raise UsageError("the Java DB is built from CycloneDX or SPDX SBOMs only", details={"format": fmt})
    return sorted(set(rows)), skipped


def _resolve(rows: Iterable[JavaIndexRow]) -> tuple[list[JavaIndexRow], list[JavaIndexRow]]:
    """Sorted unique rows with one row per SHA-1; the order of ``rows`` never matters.

    The ``indices`` SHA-1 index is UNIQUE, so two coordinates claiming one jar cannot
    both be stored. The first in sort order wins, which is input-order independent; the
    losers are reported rather than silently dropped.
    """
    unique = sorted(set(rows))
    kept: list[JavaIndexRow] = []
    conflicts: list[JavaIndexRow] = []
    by_sha1: dict[bytes, JavaIndexRow] = {}
    for row in unique:
        if row.sha1 in by_sha1:
            conflicts.append(row)
            continue
        by_sha1[row.sha1] = row
        kept.append(row)
    return kept, conflicts


def write_java_db(path: Path | str, rows: Iterable[JavaIndexRow]) -> JavaDbStats:
    """Write ``trivy-java.db`` (schema 1) atomically; same row set => same bytes.

    The file is built under a temporary name beside ``path`` with a fixed page size and
    no journal (a crash leaves only the temp file, which is removed), then VACUUMed so
    no free pages or insertion history remain, and published through
    :func:`stella.storage.atomic_local` (complete or absent, durably). The header keeps
    the rollback-journal format (journal mode OFF is not recorded in the file; only WAL
    would be): Trivy opens the DB read-write, and a WAL file would not travel inside
    the tarball.

    Raises:
        UsageError: a row is invalid (checked by ``JavaIndexRow``).
    """
    out = Path(path)
    materialised = list(rows)
    kept, conflicts = _resolve(materialised)
    duplicates = len(materialised) - len(set(materialised))
    artifact_ids: dict[tuple[str, str], int] = {}
    for row in kept:
        artifact_ids.setdefault((row.group_id, row.artifact_id), len(artifact_ids) + 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # sqlite must create the file itself so the page size applies
    try:
        connection = sqlite3.connect(tmp, isolation_level=None)
        try:
            for pragma in (
                f"PRAGMA page_size={_PAGE_SIZE}",
                "PRAGMA auto_vacuum=NONE",
                "PRAGMA journal_mode=OFF",
                "PRAGMA synchronous=OFF",
                "PRAGMA foreign_keys=ON",
            ):
                connection.execute(pragma)
            connection.execute("BEGIN")
            for statement in _SCHEMA:
                connection.execute(statement)
            connection.executemany(
                "INSERT INTO artifacts(id, group_id, artifact_id) VALUES (?, ?, ?)",
                ((ident, group, artifact) for (group, artifact), ident in artifact_ids.items()),
            )
            connection.executemany(
                "INSERT INTO indices(artifact_id, version, sha1, archive_type) VALUES (?, ?, ?, ?)",
                (
                    (artifact_ids[(row.group_id, row.artifact_id)], row.version, row.sha1, row.archive_type)
                    for row in kept
                ),
            )
            for statement in _INDEXES:
                connection.execute(statement)
            connection.execute("COMMIT")
            connection.execute("VACUUM")
        finally:
            connection.close()
        data_hash = hashlib.sha256()
        size = 0
        # SQLite must build the file itself; it is then published the one durable way.
        with tmp.open("rb") as built, atomic_local(out) as handle:
            while chunk := built.read(1 << 20):
                data_hash.update(chunk)
                size += len(chunk)
                handle.write(chunk)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-journal")):
            leftover.unlink(missing_ok=True)
    out.chmod(0o644)  # published like the bundle's other files (the temp file was private)
    if conflicts:
        logger.warning("%d Java DB rows dropped: their SHA-1 already names other coordinates", len(conflicts))
    return JavaDbStats(
        artifacts=len(artifact_ids),
        indices=len(kept),
        duplicates=duplicates,
        sha1_conflicts=tuple(conflicts),
        bytes=size,
        digest="sha256:" + data_hash.hexdigest(),
        sqlite_version=sqlite3.sqlite_version,
    )


def java_db_metadata(
    updated_at: datetime,
    *,
    next_update: datetime | None = None,
    downloaded_at: datetime | None = None,
) -> bytes:
    """``java-db/metadata.json`` (Version 1) from an injected time, never the wall clock.

    ``next_update`` defaults to ``updated_at`` + 3 days, as upstream publishes. See
    :func:`stella.adapters.trivy.artifact.trivy_metadata` for the ``downloaded_at`` choice.
    """
    return trivy_metadata(
        updated_at,
        next_update if next_update is not None else updated_at + _DEFAULT_JAVA_DB_VALIDITY,
        downloaded_at,
        schema_version=JAVA_DB_SCHEMA_VERSION,
    )
