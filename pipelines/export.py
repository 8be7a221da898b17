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
from dataclasses import dataclass
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

__all__ = ["ExportOutcome", "run_export"]

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
    staging = new_staging(request.out_dir)
    try:
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
