"""Publishing one finished bundle to its targets: the one path every surface uses.

Order matters and is the contract (docs/distribution.md):

1. every target URL is parsed and every host it will contact is checked against the
   egress allowlist -- a denied target fails the whole publish before *any* target
   sends a byte (``ERR_EXPORT_EGRESS_DENIED``, exit 8);
2. the bundle is verified once (against the trust policy when given): a target never
   receives what the bundle cannot vouch for;
3. each target publishes in turn, retrying transient failures (a ``RemoteError`` with
   no answer, 408, 429 or 5xx) with exponential backoff through an injected ``sleep``;
   refusals (egress, conflict, integrity, other 4xx) are not retried. Each target's outcome is a :class:`TargetResult`.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stella.bundle.trust import TrustPolicy
from stella.bundle.verify import failure, iter_members, verify_bundle
from stella.errors import RemoteError, StellaError, UsageError
from stella.targets.egress import EgressPolicy
from stella.targets.filesystem import FilesystemTarget
from stella.targets.gcs import GcsTarget
from stella.targets.interface import Target, TargetResult
from stella.targets.oci import OciRegistryTarget
from stella.telemetry.tracing import span

__all__ = [
    "SCHEMES",
    "RetryPolicy",
    "check_targets",
    "error_for",
    "failed",
    "parse_target",
    "publish_bundle",
    "redact",
]

_LOG = logging.getLogger(__name__)
SCHEMES = ("file", "gs", "oci")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``attempts`` tries per target, waiting ``base * factor**n`` seconds (at most ``cap``) between."""

    attempts: int = 3
    base: float = 1.0
    factor: float = 2.0
    cap: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def delay(self, failures: int) -> float:
        return float(min(self.cap, self.base * self.factor ** (failures - 1)))


def redact(url: str) -> str:
    """A target URL fit for logs, metrics and run records: no user info, no query secrets."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def parse_target(
    text: str,
    policy: EgressPolicy,
    *,
    credentials: tuple[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Target:
    """``file:///dir[?keep=N]``, ``gs://bucket/prefix``, ``oci://host[:port]/repo[:tag]`` → a target.

    Raises:
        UsageError: an unknown scheme or a malformed URL (the message lists the schemes).
    """
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in SCHEMES:
        raise UsageError(
            f"--target {text!r}: use one of file:///DIR[?keep=N], gs://BUCKET/PREFIX, oci://HOST/REPO[:TAG]",
            details={"target": text, "schemes": list(SCHEMES)},
        )
    if scheme == "oci":
        return OciRegistryTarget(rest, policy=policy, credentials=credentials)
    parts = urllib.parse.urlsplit(text)
    if scheme == "gs":
        if not parts.hostname:
            raise UsageError(f"--target {text!r}: gs://BUCKET/PREFIX needs a bucket")
        return GcsTarget(
            parts.hostname,
            parts.path.strip("/"),
            policy=policy,
            environ=dict(os.environ if environ is None else environ),
        )
    if parts.netloc not in ("", "localhost") or not parts.path:
        raise UsageError(f"--target {text!r}: a file target is file:///ABSOLUTE/PATH")
    query = urllib.parse.parse_qs(parts.query)
    unknown = set(query) - {"keep"}
    if unknown:
        raise UsageError(f"--target {text!r}: unknown parameter {sorted(unknown)[0]!r} (only keep=N)")
    try:
        keep = int(query["keep"][0]) if "keep" in query else None
    except ValueError as exc:
        raise UsageError(f"--target {text!r}: keep must be a number") from exc
    return FilesystemTarget(Path(urllib.parse.unquote(parts.path)), keep=keep)


def check_targets(targets: Sequence[Target]) -> None:
    """Refuse the whole publish if any target would contact a host off the allowlist.

    Raises:
        EgressDeniedError: naming the first refused host.
        UsageError: a malformed destination.
    """
    for target in targets:
        target.check()


@contextmanager
def _as_folder(bundle: Path) -> Iterator[Path]:
    """A bundle folder as is; a ``.tar.zst`` unpacked (names checked safe) into a private temp folder."""
    if bundle.is_dir():
        yield bundle
        return
    with tempfile.TemporaryDirectory(prefix="stella-publish-") as scratch:
        root = Path(scratch)
        for relative, stream in iter_members(bundle):
            destination = root / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            with destination.open("wb") as out:
                while chunk := stream.read(1 << 20):
                    out.write(chunk)
        yield root


def _transient(error: RemoteError) -> bool:
    """Worth another try: no answer at all, a timeout, throttling or a server-side failure."""
    status = error.details.get("status")
    return status is None or status in (408, 429) or (isinstance(status, int) and status >= 500)


def _publish_one(bundle: Path, target: Target, retry: RetryPolicy) -> TargetResult:
    shown = redact(target.url)
    with span("export.publish", **{"stella.target": shown, "stella.target.kind": target.kind}) as current:
        attempts = 0
        while True:
            attempts += 1
            try:
                result = target.publish(bundle)
            except RemoteError as exc:
                if attempts < retry.attempts and _transient(exc):
                    wait = retry.delay(attempts)
                    _LOG.warning("publish to %s failed (%s); retrying in %.1f s", shown, exc.message, wait)
                    retry.sleep(wait)
                    continue
                error: StellaError = exc
            except StellaError as exc:
                error = exc
            else:
                status = "unchanged" if result.unchanged else "published"
                current.set_attribute("stella.publish.status", status)
                current.set_attribute("stella.publish.attempts", attempts)
                _LOG.info(
                    "%s %s to %s (%s)",
                    status,
                    result.digest,
                    result.location,
                    shown,
                    extra={"event": "publish", "target": shown, "status": status, "attempts": attempts},
                )
                return TargetResult(shown, target.kind, status, attempts, result.location, result.digest)
            current.set_attribute("stella.publish.status", "failed")
            current.set_attribute("stella.publish.attempts", attempts)
            current.set_attribute("stella.error.code", error.code)
            _LOG.error(
                "publish to %s failed: %s",
                shown,
                error.message,
                extra={"event": "publish", "target": shown, "status": "failed", "error_code": error.code},
            )
            detail = {"code": error.code, "message": error.message}
            return TargetResult(shown, target.kind, "failed", attempts, error=detail)


def publish_bundle(
    bundle: Path,
    targets: Sequence[Target],
    *,
    retry: RetryPolicy | None = None,
    trust: TrustPolicy | None = None,
    verify: bool = True,
) -> list[TargetResult]:
    """Check egress for all targets, verify ``bundle`` once, publish it to each target.

    ``verify=False`` is for the export itself, which has just built and checked the bundle.

    Raises:
        EgressDeniedError: a target's host is not allowed (nothing was sent anywhere).
        BundleIntegrityError, SignatureError, TrustError: the bundle does not verify.
    """
    check_targets(targets)
    if not targets:
        return []
    if verify:
        checked = verify_bundle(bundle, trust=trust)
        if not checked.report.ok:
            raise failure(checked.report)
    with _as_folder(bundle) as folder:
        return [_publish_one(folder, target, retry or RetryPolicy()) for target in targets]


def failed(results: Sequence[TargetResult]) -> StellaError | None:
    """The error a surface reports when some target failed (the first failure's code), else None."""
    bad = [result for result in results if not result.ok]
    if not bad:
        return None
    first = bad[0].error or {}
    return error_for(
        str(first.get("code", RemoteError.code)),
        f"{len(bad)} of {len(results)} targets failed; first: {bad[0].target}: {first.get('message')}",
        {"targets": [result.to_json() for result in results]},
    )


def error_for(code: str, message: str, details: Mapping[str, Any] | None = None) -> StellaError:
    """Rebuild an error recorded as ``{code, message, details}`` (a target result, a fired slot)."""
    pending: list[type[StellaError]] = [StellaError]
    while pending:
        cls = pending.pop()
        if cls.code == code:
            return cls(message, details=details)
        pending.extend(cls.__subclasses__())
    return StellaError(message, details=details)
