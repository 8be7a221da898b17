"""The object-storage target (``gs://bucket/prefix``) through google-cloud-storage.

A bundle lands as ``<prefix>/<exportId>/<path>`` objects, payload first, then
``provenance.json``, ``export.json`` and the signatures last -- the order of the local
publish, so a reader that waits for the signatures never reads a half-written bundle.
Every object goes up as a *resumable* upload (a dropped connection costs one chunk, not
a multi-GB shard), carries its SHA-256 in its metadata, and is checked after upload:
the CRC32C and size the store reports must be the ones computed locally while reading
the file. A bundle whose objects are all present with the same digests is left alone
(``unchanged``); an interrupted upload resumes with the objects that are missing.

Egress: every request the client sends, every redirect it would follow and every token
refresh goes through the :class:`EgressPolicy` first. ``STORAGE_EMULATOR_HOST`` points
the client at an emulator (tests, air-gapped mirrors of the API).
"""

from __future__ import annotations

import base64
import hashlib
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import google_crc32c
import requests

from stella.bundle.paths import MANIFEST, PROVENANCE, SIGNATURES_DIR
from stella.errors import BundleIntegrityError, ConflictError, RemoteError, StellaError, UsageError
from stella.guards import strictjson
from stella.guards.files import open_regular
from stella.targets.egress import EgressPolicy
from stella.targets.interface import PublishResult

__all__ = ["GcsTarget", "bundle_objects"]

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
_API = ("storage.googleapis.com", 443)
_TOKEN = ("oauth2.googleapis.com", 443)
_CHUNK = 8 * 1024 * 1024  # resumable chunk; a multiple of 256 KiB as the API requires
_READ = 1 << 20
_LAST = (PROVENANCE, MANIFEST)
_CRC32C: Any = google_crc32c  # untyped C extension


@dataclass(frozen=True, slots=True)
class _Local:
    name: str  # path inside the bundle
    path: Path
    size: int
    sha256: str
    crc32c: str  # base64 of the big-endian CRC32C, as the JSON API reports it


def _describe(bundle: Path, name: str) -> _Local:
    path = bundle / name
    sha, crc, size = hashlib.sha256(), _CRC32C.Checksum(), 0
    with open_regular(path, "bundle file", error=BundleIntegrityError) as handle:
        while chunk := handle.read(_READ):
            sha.update(chunk)
            crc.update(chunk)
            size += len(chunk)
    return _Local(name, path, size, sha.hexdigest(), base64.b64encode(crc.digest()).decode())


def bundle_objects(bundle: Path) -> list[str]:
    """The bundle's files in upload order: payload, provenance, manifest, signatures."""
    names = sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file())

    def rank(name: str) -> tuple[int, str]:
        if name.startswith(f"{SIGNATURES_DIR}/"):
            return 3, name
        return (_LAST.index(name) + 1 if name in _LAST else 0), name

    return sorted(names, key=rank)


def _status(exc: Exception) -> int | None:
    """The HTTP status of a google.api_core error (None for transport failures)."""
    code = getattr(exc, "code", None)
    return code if isinstance(code, int) else None


class _GuardedSession(requests.Session):
    """A requests session that asks the egress policy before each request and each redirect."""

    def __init__(self, policy: EgressPolicy) -> None:
        super().__init__()
        self._policy = policy

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        text = url.decode() if isinstance(url, bytes) else url
        self._policy.check_url(text)
        send: Any = super().request
        response: requests.Response = send(method, text, *args, **kwargs)
        return response

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        target = super().get_redirect_target(resp)
        if target is not None:
            self._policy.check_url(urllib.parse.urljoin(resp.url, target))
        return target


@dataclass(frozen=True, slots=True)
class GcsTarget:
    """Publishes bundle folders as objects under ``gs://bucket/prefix``."""

    bucket: str
    prefix: str = ""
    policy: EgressPolicy = EgressPolicy()
    chunk_size: int = _CHUNK
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)
    kind: str = "gs"

    def __post_init__(self) -> None:
        if not self.bucket or self.chunk_size <= 0 or self.chunk_size % (256 * 1024):
            raise UsageError("gs:// targets need a bucket and a chunk size in multiples of 256 KiB")

    @property
    def url(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}".rstrip("/")

    def _emulator(self) -> str | None:
        value = self.environ.get(EMULATOR_ENV)
        if not value:
            return None
        return value if "://" in value else f"http://{value}"

    def check(self) -> None:
        for host, port in self._endpoints():
            self.policy.check(host, port)

    def _endpoints(self) -> list[tuple[str, int | None]]:
        emulator = self._emulator()
        if emulator is None:
            return [_API, _TOKEN]
        parts = urllib.parse.urlsplit(emulator)
        return [(parts.hostname or "", parts.port)]

    def _client(self) -> Any:
        from google.cloud import storage

        emulator = self._emulator()
        if emulator is not None:
            from google.auth import credentials as auth_credentials

            self.policy.check_url(emulator)
            anonymous: Any = auth_credentials.AnonymousCredentials
            return storage.Client(
                project="stella",
                credentials=anonymous(),
                client_options={"api_endpoint": emulator},
                _http=_GuardedSession(self.policy),
            )
        import google.auth
        from google.auth.transport import requests as auth_requests

        authorized: Any = auth_requests.AuthorizedSession
        refresh_request: Any = auth_requests.Request
        credentials, project = google.auth.default(
            scopes=["https://www.googleapis.com/auth/devstorage.read_write"]
        )

        class _GuardedAuthorized(_GuardedSession, authorized):  # type: ignore[misc]
            def __init__(self, policy: EgressPolicy) -> None:
                authorized.__init__(
                    self, credentials, auth_request=refresh_request(session=_GuardedSession(policy))
                )
                self._policy = policy

        return storage.Client(project=project, credentials=credentials, _http=_GuardedAuthorized(self.policy))

    def publish(self, bundle: Path) -> PublishResult:
        try:
            manifest_json = strictjson.loads(
                (bundle / MANIFEST).read_bytes(), what=MANIFEST, error=BundleIntegrityError
            )
            export_id = str(manifest_json["exportId"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BundleIntegrityError(f"{bundle} has no readable export.json: not a bundle") from exc
        base = "/".join(part for part in (self.prefix.strip("/"), export_id) if part)
        local = [_describe(bundle, name) for name in bundle_objects(bundle)]
        manifest = next(item for item in local if item.name == MANIFEST)
        location = f"gs://{self.bucket}/{base}/"
        try:
            client = self._client()
            bucket = client.bucket(self.bucket)
            remote = {
                blob.name[len(base) + 1 :]: (blob.metadata or {}).get("sha256")
                for blob in client.list_blobs(bucket, prefix=base + "/")
            }
            if remote.get(MANIFEST) not in (None, manifest.sha256):
                raise ConflictError(
                    f"{location} already holds a different bundle with id {export_id}",
                    details={"location": location},
                )
            wanted = {item.name: item.sha256 for item in local}
            if remote == wanted:
                return PublishResult(location, f"sha256:{manifest.sha256}", unchanged=True)
            for item in local:
                if remote.get(item.name) != item.sha256:
                    self._upload(bucket, f"{base}/{item.name}", item)
        except StellaError:
            raise  # egress refusals, conflicts, digest mismatches keep their own codes
        except Exception as exc:  # google.api_core / requests / auth failures: the store failed
            raise RemoteError(
                f"object storage upload to {location} failed: {type(exc).__name__}: {exc}",
                details={"location": location, "status": _status(exc)},
            ) from exc
        return PublishResult(location, f"sha256:{manifest.sha256}")

    def _upload(self, bucket: Any, name: str, item: _Local) -> None:
        blob = bucket.blob(name, chunk_size=self.chunk_size)
        blob.metadata = {"sha256": item.sha256}
        with open_regular(item.path, "bundle file", error=BundleIntegrityError) as handle:
            # No size: the client then always uses a resumable session, chunk by chunk.
            blob.upload_from_file(handle, content_type="application/octet-stream", checksum="crc32c")
        blob.reload()
        if blob.crc32c != item.crc32c or blob.size != item.size:
            raise RemoteError(
                f"gs://{bucket.name}/{name} does not match what was sent",
                details={
                    "object": name,
                    "crc32c": blob.crc32c,
                    "expected_crc32c": item.crc32c,
                    "size": blob.size,
                    "expected_size": item.size,
                },
            )
