"""Running an export: compile the profile, run it, check it, publish it.

The pipeline writes into a staging folder; only after the runner reports success *and*
the manifest is found on disk (some runners report DONE for branches they never ran)
is the staging folder renamed into place. Any failure discards the staging folder, so
a failed run never leaves something that looks like a bundle.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import apache_beam as beam
from apache_beam.runners.runner import PipelineState

from pipelines.registry import builder_for
from runners.options import pipeline_options
from stella.bundle.finish import archive_bundle, finish_bundle
from stella.bundle.publish import PublishOutcome, discard_staging, new_staging, publish
from stella.bundle.request import ExportRequest
from stella.errors import PipelineError, StellaError
from stella.signers.interface import Signer
from stella.targets.distribute import RetryPolicy, check_targets, publish_bundle
from stella.targets.egress import EgressPolicy
from stella.targets.interface import Target, TargetResult
from stella.telemetry.tracing import carrier, span

__all__ = ["ExportOutcome", "export_and_publish", "run_export"]

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportOutcome:
    export_id: str
    path: Path
    manifest: dict[str, object]
    unchanged: bool
    seconds: float
    archive: Path | None = None


def run_export(
    request: ExportRequest,
    beam_args: Sequence[str] = (),
    *,
    overwrite: bool = False,
    signer: Signer | None = None,
    archive: bool = False,
) -> ExportOutcome:
    """Build, run, finish (encrypt, attest, sign: :func:`finish_bundle`) and publish one export.

    ``archive`` also writes ``<out>/<exportId>.tar.zst`` from the published folder.

    Raises:
        StellaError: the request is unusable, the pipeline failed (``PipelineError``),
            or the destination conflicts.
    """
    builder = builder_for(request.profile.name)
    started = time.monotonic()
    request = replace(request, trace_context=carrier())  # worker spans join this run's trace
    staging = new_staging(request.out_dir)
    try:
        with span("export.plan", **{"stella.profile": request.profile.name}):
            pipeline = beam.Pipeline(options=pipeline_options(beam_args))
            builder(pipeline, request, staging)
        result = pipeline.run()
        state = result.wait_until_finish()
        if state not in (PipelineState.DONE, None):
            raise PipelineError(f"pipeline ended in state {state}", details={"state": str(state)})
        manifest_path = staging / "export.json"
        if not manifest_path.exists():
            raise PipelineError(
                "the runner reported success but wrote no manifest (some runners skip branches); nothing was published",
                details={"runner_args": list(beam_args)},
            )
        shutil.rmtree(staging / ".runs", ignore_errors=True)
        with span("export.sign", **{"stella.signed": signer is not None}):
            manifest = finish_bundle(staging, request, signer=signer)
        outcome: PublishOutcome = publish(staging, manifest["exportId"], overwrite=overwrite)
    except StellaError:
        discard_staging(staging)
        raise
    except Exception as exc:
        discard_staging(staging)
        raise PipelineError(f"export pipeline failed: {type(exc).__name__}: {exc}") from exc
    except BaseException:
        discard_staging(staging)
        raise
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
    policy: EgressPolicy | None = None,
    retry: RetryPolicy | None = None,
    overwrite: bool = False,
    signer: Signer | None = None,
    archive: bool = False,
) -> tuple[ExportOutcome, list[TargetResult]]:
    """One run as every surface launches it (CLI, schedules, service): export, then publish to ``targets``.

    Everything happens inside one ``export.run`` span, so plan, read, adapt, write, sign
    and each target's publish are its children. The targets' egress is checked again
    before the export starts, so a denied host costs no pipeline run.

    Raises:
        EgressDeniedError: a target's host is not allowed (checked before the export).
        StellaError: as :func:`run_export`. A target that fails is reported in its
            :class:`TargetResult`, not raised: the bundle itself was published locally.
    """
    egress = policy or EgressPolicy()
    check_targets(targets, egress)
    attributes = {"stella.tenant": request.tenant, "stella.profile": request.profile.name}
    with span("export.run", **attributes) as current:
        outcome = run_export(request, beam_args, overwrite=overwrite, signer=signer, archive=archive)
        current.set_attribute("stella.export_id", outcome.export_id)
        results = publish_bundle(outcome.path, targets, egress, retry=retry, verify=False)
    return outcome, results
