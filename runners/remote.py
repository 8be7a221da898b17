"""Checking a Flink or Dataflow launch before anything runs.

A remote run that is missing an option fails late and far away: Dataflow rejects the
job after the package was built and uploaded, a Flink run without ``--flink_master``
quietly downloads and starts an embedded job server (network egress), a worker on
another host cannot open a staging folder on the driver's disk. So the options these
runners need are checked here, in the driver, before the ledger is read, and a usage
error names the missing or bad option. Nothing is rewritten: every option passes
through to Beam unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from apache_beam.options.pipeline_options import (
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PipelineOptions,
    PortableOptions,
    SetupOptions,
    StandardOptions,
    WorkerOptions,
)

from runners.options import runner_args
from stella.errors import UsageError

__all__ = ["DATAFLOW_RUNNER", "ENVIRONMENT_TYPES", "FLINK_RUNNER", "check_remote_runner"]

FLINK_RUNNER = "FlinkRunner"
DATAFLOW_RUNNER = "DataflowRunner"
ENVIRONMENT_TYPES = ("DOCKER", "PROCESS", "EXTERNAL", "LOOPBACK")
# Beam's own placeholders for "start a Flink here": both download a job server jar.
_EMBEDDED_FLINK = ("", "[auto]", "[local]")


def _runner_name(options: PipelineOptions) -> str:
    runner = options.view_as(StandardOptions).runner or ""
    return str(runner).rsplit(".", 1)[-1]


def check_remote_runner(beam_args: Sequence[str], *, staging: str | None, ledger: str) -> None:
    """Refuse a Flink or Dataflow launch that could not work; other runners pass untouched.

    Args:
        beam_args: the user's Beam flags (as given after the export options).
        staging: the ``--staging`` location, ``None`` for the local default.
        ledger: the ledger root the workers will read.

    Raises:
        UsageError: naming the missing or bad option.
    """
    options = PipelineOptions(runner_args(beam_args))
    name = _runner_name(options)
    if name == FLINK_RUNNER:
        _check_flink(options, staging)
    elif name == DATAFLOW_RUNNER:
        _check_dataflow(options, staging, ledger)


def _check_flink(options: PipelineOptions, staging: str | None) -> None:
    master = options.view_as(FlinkRunnerOptions).flink_master or ""
    if master in _EMBEDDED_FLINK:
        raise UsageError(
            "FlinkRunner needs --flink_master=HOST:PORT of a running Flink cluster; without it Beam "
            "downloads and starts an embedded job server",
            details={"option": "--flink_master"},
        )
    portable = options.view_as(PortableOptions)
    environment = (portable.environment_type or "").upper()
    if environment not in ENVIRONMENT_TYPES:
        raise UsageError(
            f"FlinkRunner needs --environment_type, one of {', '.join(ENVIRONMENT_TYPES)} "
            f"(got {portable.environment_type or 'none'}): how the Python workers start",
            details={"option": "--environment_type", "value": portable.environment_type},
        )
    if environment in ("EXTERNAL", "PROCESS") and not (
        portable.environment_config or portable.environment_options
    ):
        raise UsageError(
            f"--environment_type={environment} needs --environment_config (the worker pool address "
            "or the boot command)",
            details={"option": "--environment_config"},
        )
    if environment != "LOOPBACK" and staging is None:
        raise UsageError(
            "FlinkRunner workers run outside this process: give --staging on storage they all reach "
            "(e.g. gs://bucket/prefix); the local default only works with --environment_type=LOOPBACK",
            details={"option": "--staging"},
        )


def _check_dataflow(options: PipelineOptions, staging: str | None, ledger: str) -> None:
    cloud = options.view_as(GoogleCloudOptions)
    missing = [
        flag for flag, value in (("--project", cloud.project), ("--region", cloud.region)) if not value
    ]
    if missing:
        raise UsageError(
            f"DataflowRunner needs {' and '.join(missing)}",
            details={"option": missing[0], "missing": missing},
        )
    for flag, value in (
        ("--temp_location", cloud.temp_location),
        ("--staging", staging),
        ("--ledger", ledger),
    ):
        if not value or not value.startswith("gs://"):
            found = f" ({value} is out of its workers' reach)" if value else ""
            raise UsageError(
                f"DataflowRunner needs {flag} on gs://{found}", details={"option": flag, "value": value}
            )
    setup = options.view_as(SetupOptions)
    image = options.view_as(WorkerOptions).sdk_container_image
    if not (image or setup.setup_file or setup.extra_packages):
        raise UsageError(
            "DataflowRunner needs this package on its workers: --sdk_container_image (an image with it "
            "installed), or --setup_file=pyproject.toml, or --extra_package=<built wheel>",
            details={"option": "--sdk_container_image"},
        )
