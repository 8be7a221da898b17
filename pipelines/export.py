"""Running an export: compile the profile, run it, check it, publish it.

Pipeline steps write only through Beam's FileSystems, into a per-run folder under the
*staging location*: by default the local staging folder beside ``--out`` itself, or
with ``--staging gs://bucket/prefix`` shared storage that workers on other hosts reach.
Only after the runner reports success *and* the manifest is found there (some runners
report DONE for branches they never ran) does the driver copy the payload into its
local staging folder, finish it (encrypt, attest, sign) and rename it into place. Any
failure discards both, so a failed run never leaves something that looks like a bundle.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import apache_beam as beam
from apache_beam.runners.runner import PipelineState

from pipelines.registry import builder_for
from runners.options import pipeline_options, runner_args
from runners.warm_runner import runner_for
from stella import storage
from stella.bundle.finish import archive_bundle, finish_bundle
from stella.bundle.publish import PublishOutcome, discard_staging, new_staging, publish
from stella.bundle.request import ExportRequest
from stella.errors import EmptySelectionError, PipelineError, StellaError
from stella.guards import strictjson
from stella.runtime import tune_gc
from stella.signers.interface import Signer
from stella.targets.distribute import RetryPolicy, check_targets, publish_bundle
from stella.targets.interface import Target, TargetResult
from stella.telemetry.logs import current_correlation
from stella.telemetry.tracing import carrier, span
from transforms.progress import tail_progress
from transforms.shards import RUNS_DIR

__all__ = ["ExportOutcome", "export_and_publish", "run_export"]

_LOG = logging.getLogger(__name__)

# Exceptions that mean a bug in this code, not a failed run: they surface as they are
# (the CLI reports ERR_EXPORT_INTERNAL, with the traceback under -v) instead of being
# dressed up as a pipeline failure the user could fix by retrying.
_BUGS = (
    TypeError,
    AttributeError,
    NameError,
    LookupError,
    AssertionError,
    ArithmeticError,
    NotImplementedError,
    RecursionError,
)


@dataclass(frozen=True)
class ExportOutcome:
    export_id: str
    path: Path
    manifest: dict[str, object]
    unchanged: bool
    seconds: float
    archive: Path | None = None


def _run_folder(staging: str) -> str:
    """This run's own folder under the staging location (absolute: workers have other cwds)."""
    root = staging if storage.is_remote(staging) else os.path.abspath(staging)
    return storage.join(root, f"stella-run-{uuid.uuid4().hex}")


def _require_selection(work: str, request: ExportRequest) -> None:
    """An export that selected nothing fails, unless the caller allowed an empty bundle.

    Raises:
        EmptySelectionError: every count in the manifest is zero and ``allow_empty`` is off.
    """
    with storage.open_read(storage.join(work, "export.json")) as handle:
        manifest = strictjson.loads(handle.read(), what="export.json")
    counts = manifest.get("counts") or {}
    if request.allow_empty or any(counts.values()):
        return
    raise EmptySelectionError(
        f"the selection matched no records of tenant {request.tenant} for {request.profile.name} "
        f"(selectors: {' '.join(request.selectors.to_args()) or 'none'}); nothing was published. "
        "Check the values (stella export plan), or pass --allow-empty to publish an empty bundle",
        details={
            "tenant": request.tenant,
            "profile": request.profile.name,
            "selectors": request.selectors.to_json(),
        },
    )


def run_export(
    request: ExportRequest,
    beam_args: Sequence[str] = (),
    *,
    overwrite: bool = False,
    signer: Signer | None = None,
    archive: bool = False,
    staging: str | None = None,
) -> ExportOutcome:
    """Build, run, finish (encrypt, attest, sign: :func:`finish_bundle`) and publish one export.

    ``archive`` also writes ``<out>/<exportId>.tar.zst`` from the published folder.
    ``staging`` is where pipeline steps write (see the module docstring); a run gets its
    own ``stella-run-<random>`` folder there, removed after the run.

    Raises:
        StellaError: the request is unusable, the pipeline failed (``PipelineError``:
            the runner, a worker or storage failed), or the destination conflicts.
        TypeError, AttributeError, ...: a bug (see ``_BUGS``), unchanged.
    """
    builder = builder_for(request.profile.name)
    started = time.monotonic()
    request = replace(request, trace_context=carrier())  # worker spans join this run's trace
    local = new_staging(request.out_dir)
    work = str(local) if staging is None else _run_folder(staging)
    try:
        with span("export.plan", **{"stella.profile": request.profile.name}):
            options = pipeline_options(beam_args)
            # --workers N on the embedded runner: the worker processes the CLI started ahead
            pipeline = beam.Pipeline(runner=runner_for(options), options=options)
            builder(pipeline, request, work)
        multi_process = "--direct_running_mode=multi_processing" in runner_args(beam_args)
        with tail_progress(multi_process):  # worker processes' progress, live (transforms.progress)
            # Freeze start-up and the plan here too: a multi-process run's driver runs no DoFn,
            # so it never froze, and its interpreter's last collection walked ~250,000 objects
            # at exit (0.23 s of 2-worker json:raw; 0.6 s of exit in all, against 0.1 now).
            tune_gc()
            result = pipeline.run()
            state = result.wait_until_finish()
        if state not in (PipelineState.DONE, None):
            raise PipelineError(f"pipeline ended in state {state}", details={"state": str(state)})
        if not storage.exists(storage.join(work, "export.json")):
            raise PipelineError(
                "the runner reported success but wrote no manifest (some runners skip branches); nothing was published",
                details={"runner_args": list(beam_args)},
            )
        _require_selection(work, request)
        storage.remove_tree(storage.join(work, RUNS_DIR))
        if work != str(local):
            storage.download_tree(work, local)
        with span("export.sign", **{"stella.signed": signer is not None}):
            manifest = finish_bundle(local, request, signer=signer)
        outcome: PublishOutcome = publish(local, manifest["exportId"], overwrite=overwrite)
    except BaseException as exc:
        discard_staging(local)
        if isinstance(exc, Exception) and not isinstance(exc, (StellaError, *_BUGS)):
            raise PipelineError(f"export pipeline failed: {type(exc).__name__}: {exc}") from exc
        raise
    finally:
        if work != str(local):
            storage.remove_tree(work)
    return ExportOutcome(
        export_id=manifest["exportId"],
        path=outcome.path,
        manifest=manifest,
        unchanged=outcome.unchanged,
        seconds=time.monotonic() - started,
        archive=archive_bundle(outcome.path) if archive else None,
    )


def export_and_publish(
    request: ExportRequest,
    beam_args: Sequence[str] = (),
    *,
    targets: Sequence[Target] = (),
    retry: RetryPolicy | None = None,
    overwrite: bool = False,
    signer: Signer | None = None,
    archive: bool = False,
    staging: str | None = None,
) -> tuple[ExportOutcome, list[TargetResult]]:
    """One run as every surface launches it (CLI, schedules, service): export, then publish to ``targets``.

    Everything happens inside one ``export.run`` span, so plan, read, adapt, write, sign
    and each target's publish are its children. The targets are checked (egress) again
    before the export starts, so a denied host costs no pipeline run.

    Raises:
        EgressDeniedError: a target's host is not allowed (checked before the export).
        StellaError: as :func:`run_export`. A target that fails is reported in its
            :class:`TargetResult`, not raised: the bundle itself was published locally.
    """
    check_targets(targets)
    attributes = {"stella.tenant": request.tenant, "stella.profile": request.profile.name}
    correlation = current_correlation()  # the service's run id; the CLI's logs use the trace id
    if correlation:
        attributes["stella.correlation_id"] = correlation
    with span("export.run", **attributes) as current:
        outcome = run_export(
            request, beam_args, overwrite=overwrite, signer=signer, archive=archive, staging=staging
        )
        current.set_attribute("stella.export_id", outcome.export_id)
        results = publish_bundle(outcome.path, targets, retry=retry, verify=False)
    return outcome, results
