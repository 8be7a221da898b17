"""``export.json``: the manifest every profile's bundle carries.

Field names follow StellaOps' run-manifest schema (``schema``, ``version``,
``exportId``, ``profile``, ``tenant``, ``selectors``, ``generatedAt``, ``contents``,
``rerunHash``); everything in it is a function of the selected data and the request,
never of the clock, host or runner, so identical inputs give identical bytes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stella import TOOL_NAME, __version__
from stella.canonical import dumps, sha256_digest
from stella.errors import BundleIntegrityError
from stella.guards import strictjson
from stella.guards.ids import check_id

__all__ = [
    "MANIFEST_MAX_BYTES",
    "MANIFEST_SCHEMA",
    "MANIFEST_VERSION",
    "ContentEntry",
    "build_manifest",
    "export_id_for",
    "parse_manifest",
    "rerun_hash",
]

MANIFEST_SCHEMA = "https://stellaops.io/export-center/manifest/v1alpha2"
MANIFEST_VERSION = "1.1.0"
# export.json lists every file; even a million-file bundle's manifest is far below this.
MANIFEST_MAX_BYTES = 64 << 20
_PATH = re.compile(r"[A-Za-z0-9._/-]+")


@dataclass(frozen=True, slots=True, order=True)
class ContentEntry:
    """One payload file: what a verifier recomputes."""

    path: str
    digest: str
    bytes: int
    records: int | None
    content_type: str

    def __post_init__(self) -> None:
        if not _PATH.fullmatch(self.path) or self.path.startswith("/") or ".." in self.path.split("/"):
            raise ValueError(f"content path {self.path!r} is not a safe relative path")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "digest": self.digest,
            "bytes": self.bytes,
            "contentType": self.content_type,
        }
        if self.records is not None:
            out["records"] = self.records
        return out

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ContentEntry:
        return cls(
            path=str(value["path"]),
            digest=str(value["digest"]),
            bytes=int(value["bytes"]),
            records=int(value["records"]) if "records" in value else None,
            content_type=str(value.get("contentType", "application/octet-stream")),
        )


def rerun_hash(
    *,
    tenant: str,
    profile: Mapping[str, str],
    selectors: Mapping[str, Any],
    contents: Sequence[ContentEntry],
    options: Mapping[str, Any],
) -> str:
    """Digest of everything that determines the bundle: same hash, same bytes."""
    return sha256_digest(
        dumps(
            {
                "tenant": tenant,
                "profile": dict(profile),
                "selectors": dict(selectors),
                "options": dict(options),
                "tool": {"name": TOOL_NAME, "version": __version__},
                "contents": [[c.path, c.digest] for c in sorted(contents)],
            }
        )
    )


def export_id_for(tenant: str, profile: Mapping[str, str], rerun: str) -> str:
    """Readable and content-derived: ``<tenant>-<kind>-<variant>-<12 hex of rerunHash>``.

    Never truncated: cutting the id to a length (it once was, to 64) cut the content
    hash off long tenants' ids, so two different exports got the same folder name.
    Every valid tenant (at most 63 characters) gives an id within ``check_id``'s 128.
    """
    return check_id(
        f"{tenant}-{profile['kind']}-{profile['variant']}-{rerun.split(':', 1)[1][:12]}", "exportId"
    )


def build_manifest(
    *,
    tenant: str,
    profile: Mapping[str, str],
    selectors: Mapping[str, Any],
    generated_at: str,
    contents: Sequence[ContentEntry],
    counts: Mapping[str, int],
    options: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    ordered = sorted(contents)
    paths = [c.path for c in ordered]
    if len(set(paths)) != len(paths):
        raise ValueError("duplicate content paths")
    opts = dict(options or {})
    rerun = rerun_hash(tenant=tenant, profile=profile, selectors=selectors, contents=ordered, options=opts)
    manifest: dict[str, Any] = {
        "schema": MANIFEST_SCHEMA,
        "version": MANIFEST_VERSION,
        "exportId": export_id_for(tenant, profile, rerun),
        "profile": dict(profile),
        "tenant": tenant,
        "selectors": dict(selectors),
        "generatedAt": generated_at,
        "contents": [c.to_json() for c in ordered],
        "counts": dict(sorted(counts.items())),
        "rerunHash": rerun,
        "tool": {"name": TOOL_NAME, "version": __version__},
    }
    if opts:
        manifest["options"] = opts
    if extra:
        manifest.update(extra)
    return manifest


def parse_manifest(data: bytes) -> tuple[dict[str, Any], list[ContentEntry]]:
    """Read an ``export.json`` for verification.

    ``exportId`` and ``tenant`` name folders on the receiving side, so they are checked
    here, where they enter, as well as where they are joined into paths.

    Raises:
        BundleIntegrityError: not strict JSON, wrong schema, an unsafe ``exportId`` or
            ``tenant``, or a malformed contents entry.
    """
    try:
        manifest = strictjson.loads(
            data, what="export.json", error=BundleIntegrityError, max_bytes=MANIFEST_MAX_BYTES
        )
    except BundleIntegrityError as exc:
        exc.details["file"] = "export.json"
        raise
    if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA:
        raise BundleIntegrityError(
            f"export.json does not declare schema {MANIFEST_SCHEMA}", details={"file": "export.json"}
        )
    for field in ("exportId", "tenant"):
        try:
            check_id(manifest.get(field), f"export.json {field}", error=BundleIntegrityError)
        except BundleIntegrityError as exc:
            exc.details["file"] = "export.json"
            raise
    try:
        entries = [ContentEntry.from_json(c) for c in manifest["contents"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleIntegrityError(
            f"export.json contents are malformed: {exc}", details={"file": "export.json"}
        ) from exc
    return manifest, entries
