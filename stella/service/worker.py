"""Workers: take queued runs from the store and execute them with ``run_export``.

A worker process loops: reap runs whose worker died (lease expired), prune expired
bundles, claim the oldest queued run under a lease, and execute it in a child process.
The parent only heartbeats the lease and watches for cancellation; the child does the
export. Keeping the export in a child means a cancelled run -- or a lost lease -- is
stopped by signalling one process, and the parent survives whatever the pipeline does.

Publication is the library's (staging folder, rename, archive by rename): a run killed
at any point leaves nothing that a download could serve; the store marks a run
``succeeded`` only after its archive exists, and the API serves only succeeded runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from stella.bundle.paths import MANIFEST
from stella.bundle.publish import STAGING_PREFIX
from stella.errors import RemoteError, StellaError, UsageError
from stella.service.config import ServiceConfig
from stella.service.store.interface import Lease, Run, RunStatus, RunStore
from stella.service.store.schedules import schedule_store_for
from stella.service.targets import service_scheduler, service_targets
from stella.telemetry.logs import correlation, lifecycle
from stella.telemetry.tracing import flush

__all__ = ["Worker", "die_with_parent", "run_params_request"]

_LOG = logging.getLogger("stella.service.worker")
_STOP_GRACE = 10.0
_MAX_BACKOFF = 30.0
_PR_SET_PDEATHSIG = 1
_EXIT_STOPPED = 128 + signal.SIGTERM


def run_params_request(config: ServiceConfig, run: Run) -> Any:
    """The run's frozen parameters as an :class:`~stella.bundle.request.ExportRequest`."""
    from pipelines.registry import get_profile
    from stella.bundle.encrypt import parse_encryption
    from stella.bundle.request import new_request

    params = run.params
    options = [f"{key}={value}" for key, value in sorted(params.get("options", {}).items())]
    encryption = parse_encryption(params.get("encryptTo", []), environ={})
    return new_request(
        tenant=run.tenant,
        profile=get_profile(run.profile),
        selectors=list(params.get("selectors", [])),
        options=options,
        ledger_root=config.ledger_root,
        out_dir=str(config.bundle_dir(run.tenant)),
        as_of=params.get("asOf"),
        encryption=encryption,
        allow_empty=bool(params.get("allowEmpty", False)),
    )


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


class _ProgressHandler(logging.Handler):
    """Library progress lines (segments read, files written) become ``progress`` events."""

    def __init__(self, store: RunStore, run_id: str, worker: str, segments: int) -> None:
        super().__init__(logging.INFO)
        self._store, self._run_id, self._worker = store, run_id, worker
        self.counts: dict[str, int] = {
            "segmentsTotal": segments,
            "segmentsRead": 0,
            "recordsRead": 0,
            "filesWritten": 0,
            "bytesWritten": 0,
        }

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        text = str(record.msg)
        if text.startswith("read ") and len(args) >= 2 and isinstance(args[1], int):
            self.counts["segmentsRead"] += 1
            self.counts["recordsRead"] += args[1]
        elif text.startswith("wrote ") and args and isinstance(args[-1], int):
            self.counts["filesWritten"] += 1
            self.counts["bytesWritten"] += args[-1]
        else:
            return
        total = self.counts["segmentsTotal"] or 1
        progress = {**self.counts, "percent": min(90, int(80 * self.counts["segmentsRead"] / total))}
        with contextlib.suppress(Exception):  # progress is best effort; the run's outcome is not
            self._store.record_progress(self._run_id, self._worker, progress)


def _sleep_unless(stop: Callable[[], bool], seconds: float) -> None:
    """Sleep in short slices so a SIGTERM (which sets ``stop``) ends the wait at once."""
    deadline = time.monotonic() + seconds
    while not stop() and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(0.2, left))


def die_with_parent(sig: signal.Signals = signal.SIGKILL) -> None:
    """Have the kernel send ``sig`` to this process when its parent dies (Linux; elsewhere a no-op).

    A run process must not outlive its worker (a SIGKILLed worker takes its run with it), and a
    worker ``stella serve`` started must not outlive the service, however the service ended.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)


def _execute(config: ServiceConfig, store: RunStore, run: Run, worker: str) -> None:
    """The child process: one run, start to finish, outcome written to the store."""
    die_with_parent()
    stopped = threading.Event()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        stopped.set()
        sys.exit(_EXIT_STOPPED)  # unwinds: export_and_publish discards its staging

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        _execute_run(config, store, run, worker, stopped)
    finally:
        flush()  # a forked process ends with os._exit: no exit hook sends the run's spans


def _execute_run(
    config: ServiceConfig, store: RunStore, run: Run, worker: str, stopped: threading.Event
) -> None:
    """Run the export and record its outcome; a stopped run's outcome is its supervisor's to record."""
    with correlation(run.id):
        try:
            try:
                result, export_id = _export(config, store, run, worker)
            except Exception:
                # Beam turns the SystemExit raised inside a DoFn into a pipeline error; but a run
                # its supervisor stopped (cancelled, lease lost, worker stopping) did not fail:
                # the supervisor, not this process, records what becomes of it.
                if stopped.is_set():
                    sys.exit(_EXIT_STOPPED)
                raise
        except StellaError as exc:
            error = {"code": exc.code, "message": exc.message, "details": exc.details}
            lifecycle(_LOG, "failed", runId=run.id, tenant=run.tenant, code=exc.code)
            store.finish_run(run.id, worker, RunStatus.FAILED, error=error)
            return
        except Exception as exc:
            _LOG.exception("run %s failed unexpectedly", run.id)
            error = {"code": "ERR_EXPORT_INTERNAL", "message": f"{type(exc).__name__}: {exc}", "details": {}}
            store.finish_run(run.id, worker, RunStatus.FAILED, error=error)
            return
        store.finish_run(run.id, worker, RunStatus.SUCCEEDED, export_id=export_id, result=result)


def _export(config: ServiceConfig, store: RunStore, run: Run, worker: str) -> tuple[dict[str, Any], str]:
    from pipelines.export import export_and_publish
    from stella.canonical import sha256_digest
    from stella.signers.registry import load_signer

    common = {"runId": run.id, "tenant": run.tenant, "profile": run.profile}
    targets = service_targets(run.params.get("targets", []))  # egress refused before the ledger is read
    request = run_params_request(config, run)
    signer = None
    if run.params.get("sign"):
        if not config.sign_key:
            raise UsageError("this run asks for a signature but the service has no signing key")
        signer = load_signer(config.sign_key, environ=os.environ)
    lifecycle(_LOG, "plan", segments=len(request.segments), selectors=run.params.get("selectors"), **common)
    handler = _ProgressHandler(store, run.id, worker, len(request.segments))
    loggers = [logging.getLogger(name) for name in ("transforms", "pipelines")]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(min(logger.getEffectiveLevel(), logging.INFO))
    try:
        lifecycle(_LOG, "read", **common)
        outcome, published = export_and_publish(
            request, config.beam_args, targets=targets, signer=signer, archive=True, staging=config.staging
        )
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    lifecycle(_LOG, "adapter", records=handler.counts["recordsRead"], **common)
    lifecycle(_LOG, "write", files=handler.counts["filesWritten"], **common)
    if signer is not None:
        lifecycle(_LOG, "sign", keyId=signer.key_id, **common)
    assert outcome.archive is not None
    manifest_bytes = (outcome.path / MANIFEST).read_bytes()
    archive_digest = _file_digest(outcome.archive)
    archive_bytes = outcome.archive.stat().st_size
    manifest: dict[str, Any] = outcome.manifest
    contents: list[dict[str, Any]] = list(manifest.get("contents", []))
    result = {
        "archive": outcome.archive.name,
        "archiveDigest": archive_digest,
        "archiveBytes": archive_bytes,
        "manifestDigest": sha256_digest(manifest_bytes),
        "generatedAt": manifest.get("generatedAt"),
        "counts": manifest.get("counts", {}),
        "files": len(contents),
        "payloadBytes": sum(int(entry["bytes"]) for entry in contents),
        "signed": signer is not None,
        "unchanged": outcome.unchanged,
        "seconds": round(outcome.seconds, 3),
    }
    if targets:
        result["targets"] = [target.to_json() for target in published]
        for target in published:
            store.append_event(run.id, "published", {"runId": run.id, **target.to_json()})
    for name, digest, size in (
        (outcome.archive.name, archive_digest, archive_bytes),
        (MANIFEST, result["manifestDigest"], len(manifest_bytes)),
    ):
        store.append_event(
            run.id, "artifact_ready", {"runId": run.id, "path": name, "sha256": digest, "bytes": size}
        )
    store.record_progress(run.id, worker, {**handler.counts, "percent": 100})
    lifecycle(_LOG, "publish", exportId=outcome.export_id, bytes=archive_bytes, **common)
    return result, outcome.export_id


class Worker:
    """One worker loop. ``stop`` is polled between runs and while a run executes."""

    def __init__(
        self,
        config: ServiceConfig,
        store: RunStore,
        *,
        worker_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._clock = clock
        self._last_prune = 0.0
        self.scheduler = service_scheduler(config, store, schedule_store_for(store))

    def run_forever(self, stop: Callable[[], bool]) -> None:
        import pipelines.export  # noqa: F401  (import once, before forking: each run starts fast)

        _LOG.info("worker started", extra={"event": "worker_started", "worker": self.id})
        backoff = 0.0
        while not stop():
            try:
                busy = self.step(stop)
            except RemoteError as exc:
                # The store went away (restart, failover): wait and retry, stoppable at any
                # moment; a run this worker held lapses with its lease and is requeued.
                backoff = min(_MAX_BACKOFF, max(self.config.poll_seconds, backoff * 2))
                _LOG.warning(
                    "run store unavailable; retrying in %.1f s",
                    backoff,
                    extra={"event": "store_unavailable", "worker": self.id, "error": exc.message},
                )
                _sleep_unless(stop, backoff)
                continue
            backoff = 0.0
            if not busy:
                _sleep_unless(stop, self.config.poll_seconds)

    def step(self, stop: Callable[[], bool] = lambda: False) -> bool:
        """Reap, prune, and run one queued run if there is one; True if a run was executed."""
        for run in self.store.reap_expired(self.config.max_attempts):
            _LOG.warning(
                "lease expired",
                extra={"event": "lease_expired", "runId": run.id, "status": run.status.value},
            )
        if self._clock() - self._last_prune > 60.0:
            self.prune()
            self._last_prune = self._clock()
        self.scheduler.tick()  # due slots become queued runs (each claimed by one instance only)
        lease = self.store.claim_run(self.id, self.config.lease_seconds)
        if lease is None:
            return False
        self._supervise(lease, stop)
        return True

    def _supervise(self, lease: Lease, stop: Callable[[], bool]) -> None:
        run = lease.run
        context = multiprocessing.get_context("fork")
        child = context.Process(target=_execute, args=(self.config, self.store, run, self.id), daemon=True)
        with correlation(run.id):
            lifecycle(_LOG, "claimed", runId=run.id, worker=self.id, attempt=run.attempts)
            child.start()
            next_beat = time.monotonic() + self.config.heartbeat_seconds
            while child.is_alive():
                child.join(timeout=min(0.2, self.config.heartbeat_seconds))
                if time.monotonic() < next_beat or not child.is_alive():
                    continue
                next_beat = time.monotonic() + self.config.heartbeat_seconds
                try:
                    cancel = self.store.heartbeat(run.id, self.id, self.config.lease_seconds)
                except RemoteError:
                    self._stop_child(child)  # the lease cannot be kept: stop as if it were lost
                    raise
                if cancel is None or cancel or stop():
                    self._stop_child(child)
                    if cancel:
                        self.store.finish_run(run.id, self.id, RunStatus.CANCELLED)
                    # Lease lost or worker stopping: the lease lapses and the reaper requeues the run.
                    return
            if child.exitcode != 0:
                # A crash the child could not report (killed, out of memory): fail the run if still ours.
                self.store.finish_run(
                    run.id,
                    self.id,
                    RunStatus.FAILED,
                    error={
                        "code": "ERR_EXPORT_INTERNAL",
                        "message": f"the run process ended with exit code {child.exitcode}; nothing was published",
                        "details": {"exitCode": child.exitcode},
                    },
                )

    @staticmethod
    def _stop_child(child: Any) -> None:
        child.terminate()
        child.join(_STOP_GRACE)
        if child.is_alive():
            child.kill()
            child.join()

    def prune(self) -> None:
        """Retention: expire old runs, delete bundles no live run refers to, and stale staging."""
        cutoff = self._clock() - self.config.retention_days * 86400
        expired = self.store.expire_before(cutoff)
        for tenant in sorted({run.tenant for run in expired}):
            live = self.store.live_export_ids(tenant)
            folder = self.config.bundle_dir(tenant)
            for run in expired:
                if run.tenant != tenant or not run.export_id or run.export_id in live:
                    continue
                shutil.rmtree(folder / run.export_id, ignore_errors=True)
                with contextlib.suppress(FileNotFoundError):
                    (folder / f"{run.export_id}.tar.zst").unlink()
                lifecycle(_LOG, "pruned", runId=run.id, exportId=run.export_id, tenant=tenant)
        stale = self._clock() - max(3600.0, 4 * self.config.lease_seconds)
        root = self.config.home / "bundles"
        if root.is_dir():
            for staging in root.glob(f"*/{STAGING_PREFIX}*"):
                with contextlib.suppress(OSError):
                    if staging.stat().st_mtime < stale:
                        shutil.rmtree(staging, ignore_errors=True)
