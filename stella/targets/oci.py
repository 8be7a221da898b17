"""Push an OCI image layout to a registry over the OCI distribution API, with ``urllib`` only.

Why not oras: pushing a layout needs five requests (ping, HEAD blob, POST+PUT upload,
PUT manifest) and a token dance; oras-py would add jsonschema, attrs and a requests
stack for that, and would hide exactly the decisions we must control -- which hosts we
may talk to, whether plain HTTP is acceptable, where credentials may travel. Every URL
this module opens, including token realms and redirects, goes through one egress check
that runs *before* the connection.

Transport rules: HTTPS always, except for loopback hosts (``localhost``, ``127.0.0.0/8``,
``::1``) and when the caller passes ``allow_plain_http=True``; in those cases HTTPS is
tried first and plain HTTP is the fallback, as go-containerregistry (and so Trivy) does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from functools import partial
from http.client import HTTPException, HTTPMessage
from pathlib import Path
from typing import IO, Any

from stella.errors import BundleIntegrityError, RemoteError, StellaError, UsageError
from stella.guards import strictjson
from stella.guards.files import open_regular
from stella.targets.egress import EgressPolicy, is_loopback
from stella.targets.interface import PublishResult

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "PASSWORD_ENV",
    "OciReference",
    "OciRegistryTarget",
    "publish_layout",
    "push_layout",
    "registry_credentials",
]

logger = logging.getLogger(__name__)

# Blobs above this size go up in PATCH chunks of this size, so a proxy's request-size
# limit or a dropped connection costs one chunk, not a multi-GB DB.
DEFAULT_CHUNK_SIZE = 64 * 1024 * 1024
_DEFAULT_TIMEOUT = 300.0
# A registry's error body is untrusted and only needed for the message.
_MAX_ERROR_BODY = 64 * 1024
_MAX_TOKEN_BODY = 1024 * 1024
_MAX_MANIFEST = 4 * 1024 * 1024
_MAX_RESPONSE = _MAX_MANIFEST
# distribution's NameTotalLengthMax: registry host plus repository path.
_MAX_NAME = 255
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_REPO_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_REPO_COMPONENT}(?:/{_REPO_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?")
_REF_NAME = "org.opencontainers.image.ref.name"
_MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
_COPY_CHUNK = 1 << 20
# Registry passwords come from the environment, never a command line other users can read.
PASSWORD_ENV = "STELLA_REGISTRY_PASSWORD"


@dataclass(frozen=True, slots=True)
class OciReference:
    """``HOST[:PORT]/repository[:tag][@sha256:…]`` with the registry host always explicit."""

    host: str
    port: int | None
    repository: str
    tag: str | None
    digest: str | None

    @property
    def netloc(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        text = f"{self.netloc}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    @classmethod
    def parse(cls, text: str) -> OciReference:
        """Parse a reference; a missing registry host is an error, never Docker Hub.

        Raises:
            UsageError: the reference is malformed or names no registry host.
        """
        ref = text.strip()
        netloc, slash, rest = ref.partition("/")
        looks_like_host = "." in netloc or ":" in netloc or netloc.lower() == "localhost"
        if not slash or not rest or not looks_like_host or not _HOST.fullmatch(netloc):
            raise UsageError(
                "an OCI reference must name its registry: HOST[:PORT]/repository[:tag]",
                details={"reference": text},
            )
        rest, at, digest = rest.partition("@")
        if at and not _DIGEST.fullmatch(digest):
            raise UsageError("only sha256 digests are supported in references", details={"reference": text})
        repository, tag = rest, None
        last = rest.rsplit("/", 1)[-1]
        if ":" in last:
            repository, _, tag = rest.rpartition(":")
            if not _TAG.fullmatch(tag):
                raise UsageError("invalid OCI tag", details={"reference": text, "tag": tag})
        if len(f"{netloc}/{repository}") > _MAX_NAME or not _REPOSITORY.fullmatch(repository):
            raise UsageError(
                "invalid OCI repository name (lowercase components separated by '/', 255 characters at most)",
                details={"reference": text, "repository": repository},
            )
        host, port = netloc, None
        port_text = netloc.rsplit("]", 1)[-1] if netloc.startswith("[") else netloc
        if ":" in port_text:
            host, _, number = netloc.rpartition(":")
            port = int(number)
            if not 0 < port < 65536:
                raise UsageError("invalid registry port", details={"reference": text})
        return cls(host=host.lower(), port=port, repository=repository, tag=tag, digest=digest or None)


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    headers: Message
    body: bytes


@dataclass(frozen=True, slots=True)
class _Blob:
    digest: str
    size: int
    path: Path


class _FileSlice:
    """A read-only window of a file, so chunked uploads stream instead of buffering."""

    def __init__(self, path: Path, start: int, length: int) -> None:
        self._handle = path.open("rb")
        self._handle.seek(start)
        self._left = length

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        want = self._left if size < 0 else min(size, self._left)
        data = self._handle.read(want)
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._handle.close()


_Body = Callable[[], "bytes | _FileSlice | None"]


class _EgressRedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows redirects only to allowed hosts, and never carries credentials to another host."""

    def __init__(self, policy: EgressPolicy) -> None:
        super().__init__()
        self._policy = policy

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        self._policy.check_url(newurl)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if (
            new is not None
            and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc
        ):
            new.remove_header("Authorization")
        return new


class _Session:
    """One registry, one repository: request plumbing, auth challenges, error mapping."""

    def __init__(
        self,
        ref: OciReference,
        policy: EgressPolicy,
        opener: urllib.request.OpenerDirector,
        *,
        timeout: float,
        credentials: tuple[str, str] | None,
    ) -> None:
        self.ref = ref
        self.policy = policy
        self.opener = opener
        self.timeout = timeout
        self.credentials = credentials
        self.base = ""
        self.authorization: str | None = None

    # -- plumbing -----------------------------------------------------------------

    def _send(self, method: str, url: str, headers: Mapping[str, str], body: _Body | None) -> _Response:
        self.policy.check_url(url)
        data = body() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        for name, value in headers.items():
            request.add_header(name, value)
        if self.authorization and urllib.parse.urlsplit(url).netloc == self.ref.netloc:
            request.add_header("Authorization", self.authorization)
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                return _Response(response.status, response.headers, response.read(_MAX_RESPONSE))
        except urllib.error.HTTPError as exc:
            payload = exc.read(_MAX_ERROR_BODY) if exc.fp is not None else b""
            return _Response(exc.code, exc.headers, payload)
        finally:
            if isinstance(data, _FileSlice):
                data.close()

    def request(
        self,
        method: str,
        target: str,
        *,
        expect: Sequence[int],
        headers: Mapping[str, str] | None = None,
        body: _Body | None = None,
    ) -> _Response:
        """Send, answer one auth challenge if needed, and map failures to :class:`RemoteError`."""
        url = target if "://" in target else self.base + target
        sent_headers = dict(headers or {})
        try:
            response = self._send(method, url, sent_headers, body)
            if response.status == 401 and self._authenticate(response):
                response = self._send(method, url, sent_headers, body)
        except (urllib.error.URLError, HTTPException, OSError) as exc:
            raise RemoteError(
                f"{method} {self._display(url)} failed: {exc}",
                details={"method": method, "url": self._display(url), "status": None},
            ) from exc
        if response.status not in expect:
            raise _remote_error(method, self._display(url), response)
        return response

    def _display(self, url: str) -> str:
        parts = urllib.parse.urlsplit(url)
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))

    # -- auth -----------------------------------------------------------------------

    def _authenticate(self, response: _Response) -> bool:
        """Handle ``WWW-Authenticate`` (distribution token auth, or Basic); True if worth a retry."""
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme, _, params_text = challenge.partition(" ")
        params = dict(re.findall(r'(\w+)="([^"]*)"', params_text))
        if scheme.lower() == "basic":
            if self.credentials is None or self.authorization is not None:
                return False
            user, secret = self.credentials
            self.authorization = "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()
            return True
        if scheme.lower() != "bearer" or "realm" not in params:
            return False
        query = {key: params[key] for key in ("service", "scope") if key in params}
        realm = params["realm"]
        token_url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        # The realm is chosen by the registry: it gets the same egress rule as the registry.
        self.policy.check_url(token_url)
        request = urllib.request.Request(token_url, method="GET")
        if self.credentials is not None:
            user, secret = self.credentials
            request.add_header(
                "Authorization", "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()
            )
        try:
            with self.opener.open(request, timeout=self.timeout) as token_response:
                document = json.loads(token_response.read(_MAX_TOKEN_BODY))
        except urllib.error.HTTPError as exc:
            body = exc.read(_MAX_ERROR_BODY) if exc.fp is not None else b""
            raise _remote_error(
                "GET", self._display(token_url), _Response(exc.code, exc.headers, body)
            ) from exc
        except (urllib.error.URLError, HTTPException, OSError, ValueError) as exc:
            raise RemoteError(
                f"token request to {self._display(token_url)} failed: {exc}",
                details={"url": self._display(token_url), "status": None},
            ) from exc
        token = document.get("token") or document.get("access_token") if isinstance(document, dict) else None
        if not isinstance(token, str) or not token:
            raise RemoteError("the registry's token service returned no token", details={"url": realm})
        previous, self.authorization = self.authorization, f"Bearer {token}"
        return previous != self.authorization

    # -- protocol ---------------------------------------------------------------------

    def connect(self) -> None:
        """Pick the scheme with ``GET /v2/``: HTTPS, or plain HTTP where the policy allows it."""
        schemes = ["https", "http"] if self.policy.plain_http_ok(self.ref.host) else ["https"]
        last: RemoteError | None = None
        for scheme in schemes:
            self.base = f"{scheme}://{self.ref.netloc}"
            try:
                self.request("GET", "/v2/", expect=(200, 401))
            except RemoteError as exc:
                if exc.details.get("status") is not None or not isinstance(
                    exc.__cause__, _TRANSPORT_FAILURES
                ):
                    raise
                last = exc
                continue
            if scheme == "http" and not is_loopback(self.ref.host):
                logger.warning("pushing to %s over plain HTTP (allow_plain_http=True)", self.ref.netloc)
            return
        assert last is not None
        raise last

    def push_blob(self, blob: _Blob, *, chunk_size: int) -> bool:
        """Upload one blob unless the registry already has it; True if bytes were sent."""
        path = f"/v2/{self.ref.repository}/blobs/{blob.digest}"
        existing = self.request("HEAD", path, expect=(200, 404))
        if existing.status == 200:
            return False
        started = self.request("POST", f"/v2/{self.ref.repository}/blobs/uploads/", expect=(202,))
        location = self._location(started)
        if blob.size > chunk_size:
            offset = 0
            while offset < blob.size:
                length = min(chunk_size, blob.size - offset)
                patched = self.request(
                    "PATCH",
                    location,
                    expect=(202,),
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Length": str(length),
                        "Content-Range": f"{offset}-{offset + length - 1}",
                    },
                    body=partial(_FileSlice, blob.path, offset, length),
                )
                location = self._location(patched)
                offset += length
            final_body: _Body | None = None
            final_length = 0
        else:
            final_body = partial(_FileSlice, blob.path, 0, blob.size)
            final_length = blob.size
        separator = "&" if "?" in location else "?"
        done = self.request(
            "PUT",
            f"{location}{separator}digest={urllib.parse.quote(blob.digest)}",
            expect=(201,),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(final_length)},
            body=final_body,
        )
        reported = done.headers.get("Docker-Content-Digest")
        if reported and reported != blob.digest:
            raise RemoteError(
                "the registry stored a blob under a different digest",
                details={"expected": blob.digest, "reported": reported},
            )
        return True

    def manifest_digest(self, reference: str) -> str | None:
        """The digest the registry serves for ``reference`` now, or None if it has none."""
        response = self.request(
            "HEAD",
            f"/v2/{self.ref.repository}/manifests/{reference}",
            expect=(200, 404),
            headers={"Accept": _MANIFEST_ACCEPT},
        )
        return response.headers.get("Docker-Content-Digest") if response.status == 200 else None

    def push_manifest(self, reference: str, media_type: str, manifest: bytes, digest: str) -> str:
        response = self.request(
            "PUT",
            f"/v2/{self.ref.repository}/manifests/{reference}",
            expect=(201,),
            headers={"Content-Type": media_type, "Content-Length": str(len(manifest))},
            body=lambda: manifest,
        )
        reported = response.headers.get("Docker-Content-Digest") or digest
        if reported != digest:
            raise RemoteError(
                "the registry computed a different manifest digest",
                details={"expected": digest, "reported": reported},
            )
        return digest

    def _location(self, response: _Response) -> str:
        location = response.headers.get("Location")
        if not location:
            raise RemoteError("the registry sent no upload Location", details={"status": response.status})
        return urllib.parse.urljoin(self.base + "/", location)


# No HTTP answer at all (TLS handshake refused, connection reset): the cases where
# go-containerregistry retries a permitted host over plain HTTP.
_TRANSPORT_FAILURES = (urllib.error.URLError, HTTPException, ConnectionError, ssl.SSLError)


def _remote_error(method: str, url: str, response: _Response) -> RemoteError:
    text = response.body[:_MAX_ERROR_BODY].decode("utf-8", "replace")
    errors: Any = None
    try:
        errors = json.loads(text).get("errors")
    except (ValueError, AttributeError):
        errors = None
    summary = text.strip()[:500] or "(empty body)"
    return RemoteError(
        f"{method} {url} returned HTTP {response.status}: {summary}",
        details={
            "method": method,
            "url": url,
            "status": response.status,
            "body": text[:4096],
            "errors": errors,
        },
    )


def _sha256_file(path: Path) -> tuple[str, int]:
    hasher = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_COPY_CHUNK):
            hasher.update(chunk)
            size += len(chunk)
    return "sha256:" + hasher.hexdigest(), size


def _blob_path(layout: Path, digest: str) -> Path:
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise BundleIntegrityError(
            "OCI layout names a blob with an unsupported digest", details={"digest": digest}
        )
    return layout / "blobs" / "sha256" / digest.split(":", 1)[1]


def _checked_blob(layout: Path, descriptor: Mapping[str, Any]) -> _Blob:
    """A blob of the layout whose bytes match its descriptor: never push what we can't vouch for."""
    digest = descriptor.get("digest")
    path = _blob_path(layout, str(digest))
    if not path.is_file():
        raise BundleIntegrityError("OCI layout is missing a blob", details={"digest": digest})
    actual, size = _sha256_file(path)
    if actual != digest or size != descriptor.get("size"):
        raise BundleIntegrityError(
            "OCI layout blob does not match its descriptor",
            details={"digest": digest, "actual": actual, "size": size, "declared": descriptor.get("size")},
        )
    return _Blob(digest=actual, size=size, path=path)


def _load_json(path: Path, what: str) -> Any:
    try:
        with open_regular(path, what, error=BundleIntegrityError) as handle:
            return strictjson.loads(handle.read(), what=what, error=BundleIntegrityError)
    except (OSError, StellaError) as exc:
        raise BundleIntegrityError(
            f"cannot read the OCI layout's {what}", details={"file": path.name}
        ) from exc


def _select_manifest(layout: Path, tag: str | None) -> Mapping[str, Any]:
    index = _load_json(layout / "index.json", "index.json")
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or not manifests:
        raise BundleIntegrityError("the OCI layout's index.json lists no manifest")
    if len(manifests) == 1:
        chosen = manifests[0]
    else:
        named = [
            m for m in manifests if isinstance(m, dict) and m.get("annotations", {}).get(_REF_NAME) == tag
        ]
        if len(named) != 1:
            raise UsageError(
                "the OCI layout holds several manifests: the reference's tag must name exactly one",
                details={"tag": tag},
            )
        chosen = named[0]
    if not isinstance(chosen, dict):
        raise BundleIntegrityError("malformed manifest descriptor in index.json")
    return chosen


def push_layout(
    layout_dir: Path | str,
    reference: str,
    *,
    allow_plain_http: bool = False,
    allowlist: Sequence[str] = (),
    credentials: tuple[str, str] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    timeout: float = _DEFAULT_TIMEOUT,
    opener: urllib.request.OpenerDirector | None = None,
) -> str:
    """:func:`publish_layout` returning only the manifest digest."""
    return publish_layout(
        layout_dir,
        reference,
        policy=EgressPolicy(tuple(allowlist), allow_plain_http),
        credentials=credentials,
        chunk_size=chunk_size,
        timeout=timeout,
        opener=opener,
    ).digest


def publish_layout(
    layout_dir: Path | str,
    reference: str,
    *,
    policy: EgressPolicy,
    credentials: tuple[str, str] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    timeout: float = _DEFAULT_TIMEOUT,
    opener: urllib.request.OpenerDirector | None = None,
) -> PublishResult:
    """Push the (single) manifest of an OCI image layout and its blobs to ``reference``.

    The egress and transport checks run first, so a refused destination is never
    contacted. Blobs are verified against their descriptors before upload, skipped when
    the registry already has them (HEAD), sent monolithically (POST, then PUT
    ``?digest=``) or in PATCH chunks above ``chunk_size``; the manifest goes last, so a
    tag never points at missing blobs. A tag that already names this manifest is left
    alone (``unchanged``): nothing is uploaded. ``opener`` exists for tests; a custom
    one must enforce the redirect rules itself.

    Returns:
        The manifest's location (``host/repo@sha256:…``) and digest.

    Raises:
        EgressDeniedError: the host is neither loopback nor on ``allowlist``.
        UsageError: malformed reference or chunk size.
        BundleIntegrityError: the layout is incomplete or a blob does not match its digest.
        RemoteError: the registry refused or failed (status and its error body in details).
    """
    ref = OciReference.parse(reference)
    policy.check(ref.host, ref.port)
    if chunk_size <= 0:
        raise UsageError("chunk_size must be positive", details={"chunk_size": chunk_size})
    layout = Path(layout_dir)
    descriptor = _select_manifest(layout, ref.tag)
    manifest_blob = _checked_blob(layout, descriptor)
    if manifest_blob.size > _MAX_MANIFEST:
        raise BundleIntegrityError(
            "the manifest is larger than registries accept", details={"size": manifest_blob.size}
        )
    manifest_bytes = manifest_blob.path.read_bytes()
    manifest = _load_json(manifest_blob.path, "manifest")
    config = manifest.get("config") if isinstance(manifest, dict) else None
    layers = manifest.get("layers") if isinstance(manifest, dict) else None
    media_type = str(descriptor.get("mediaType") or (manifest or {}).get("mediaType") or "")
    if not isinstance(config, dict) or not isinstance(layers, list) or not media_type:
        raise BundleIntegrityError("the layout's manifest is not an OCI image manifest")
    blobs = [_checked_blob(layout, config)]
    blobs += [_checked_blob(layout, layer) for layer in layers if isinstance(layer, dict)]
    tag = ref.digest or ref.tag or descriptor.get("annotations", {}).get(_REF_NAME)
    if not tag:
        raise UsageError(
            "give the reference a tag (the layout has no ref.name)", details={"reference": reference}
        )
    if ref.digest and ref.digest != manifest_blob.digest:
        raise UsageError(
            "the reference's digest is not the layout manifest's digest",
            details={"reference": reference, "manifest": manifest_blob.digest},
        )

    session = _Session(
        ref,
        policy,
        opener or urllib.request.build_opener(_EgressRedirectHandler(policy)),
        timeout=timeout,
        credentials=credentials,
    )
    session.connect()
    location = f"{ref.netloc}/{ref.repository}@{manifest_blob.digest}"
    if session.manifest_digest(str(tag)) == manifest_blob.digest:
        logger.info("%s:%s already is %s: nothing to push", location.split("@")[0], tag, manifest_blob.digest)
        return PublishResult(location=location, digest=manifest_blob.digest, unchanged=True)
    for blob in sorted({blob.digest: blob for blob in blobs}.values(), key=lambda item: item.digest):
        sent = session.push_blob(blob, chunk_size=chunk_size)
        logger.info("blob %s %s", blob.digest, "uploaded" if sent else "already present")
    digest = session.push_manifest(str(tag), media_type, manifest_bytes, manifest_blob.digest)
    logger.info("pushed %s/%s:%s as %s", ref.netloc, ref.repository, tag, digest)
    return PublishResult(location=location, digest=digest)


def registry_credentials(username: str | None, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """``(username, $STELLA_REGISTRY_PASSWORD)``, or ``None`` for anonymous pushes.

    Raises:
        UsageError: a user name without the password variable.
    """
    if username is None:
        return None
    password = environ.get(PASSWORD_ENV)
    if not password:
        raise UsageError(f"--username needs the password in ${PASSWORD_ENV}")
    return username, password


@dataclass(frozen=True, slots=True)
class OciRegistryTarget:
    """The registry target (``oci://HOST[:PORT]/REPO[:TAG]``): a bundle as an OCI artifact.

    Trivy bundles go up in Trivy's exact shape (their ``data/oci`` layout); any other
    bundle as the Export Center artifact of :mod:`stella.targets.artifact`.
    """

    reference: str
    policy: EgressPolicy = EgressPolicy()
    credentials: tuple[str, str] | None = field(default=None, repr=False)  # never in logs
    chunk_size: int = DEFAULT_CHUNK_SIZE
    kind: str = "oci"

    @property
    def url(self) -> str:
        return f"oci://{self.reference}"

    def check(self) -> None:
        ref = OciReference.parse(self.reference)
        self.policy.check(ref.host, ref.port)

    def publish(self, bundle: Path) -> PublishResult:
        from stella.targets.artifact import bundle_layout

        ref = OciReference.parse(self.reference)
        with tempfile.TemporaryDirectory(prefix="stella-oci-") as scratch:
            layout = bundle_layout(bundle, Path(scratch), ref.tag or "latest")
            return publish_layout(
                layout,
                self.reference,
                policy=self.policy,
                credentials=self.credentials,
                chunk_size=self.chunk_size,
            )
