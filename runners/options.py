"""Choosing the Beam runner: offline by default, anything else on request.

Beam 2.77's ``DirectRunner`` first tries to *download* the Prism runner binary from
GitHub, then falls back. That is unsanctioned egress for an air-gapped product and
makes behaviour depend on the network, so the default here is the embedded
``FnApiRunner`` (what DirectRunner falls back to anyway), and an explicit
``--runner=DirectRunner`` is mapped to it unless a local ``--prism_location`` is given.
Every other runner and option (Dask, Flink, Dataflow, ``--direct_running_mode``,
``--direct_num_workers``...) passes through untouched.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Iterable, Sequence
from typing import NoReturn

from apache_beam.options.pipeline_options import PipelineOptions

__all__ = [
    "DASK_RUNNER",
    "OFFLINE_RUNNER",
    "beam_option_strings",
    "pipeline_options",
    "quiet_workers",
    "runner_args",
    "validate_beam_args",
    "worker_args",
    "worker_count",
]

OFFLINE_RUNNER = "FnApiRunner"
DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
_ALIASES = {"dask": DASK_RUNNER, "daskrunner": DASK_RUNNER}
_LOG = logging.getLogger(__name__)


def runner_args(beam_args: Sequence[str]) -> list[str]:
    """Normalise user Beam flags: default runner, DirectRunner without Prism download."""
    args = list(beam_args)
    runner_index = next((i for i, a in enumerate(args) if a == "--runner" or a.startswith("--runner=")), None)
    if runner_index is None:
        return [f"--runner={OFFLINE_RUNNER}", *args]
    if args[runner_index] == "--runner":
        if runner_index + 1 >= len(args):
            from stella.errors import UsageError

            raise UsageError("--runner needs a value (e.g. FnApiRunner, Dask, FlinkRunner, DataflowRunner)")
        name = args.pop(runner_index + 1)
        args[runner_index] = f"--runner={name}"
    name = args[runner_index].split("=", 1)[1]
    lowered = name.lower()
    if lowered in _ALIASES:
        args[runner_index] = f"--runner={_ALIASES[lowered]}"
    elif lowered in ("directrunner", "direct", "switchingdirectrunner") and not any(
        a.startswith("--prism_location") for a in args
    ):
        _LOG.info(
            "DirectRunner would try to download Prism from the internet; using its offline FnApiRunner path"
        )
        args[runner_index] = f"--runner={OFFLINE_RUNNER}"
    return args


def worker_args(workers: int | None, beam_args: Sequence[str]) -> list[str]:
    """``--workers N`` as the embedded runner's own flags (N worker processes on this machine).

    One process is the default because it starts instantly and small exports finish
    before workers would; a large ``trivy:db`` export gains about 1.4x from two. Other
    runners size themselves with their own options, so ``--workers`` beside them is an
    error rather than silently ignored.

    Raises:
        UsageError: ``workers`` below 1, or given with a non-local runner or with the
            ``--direct_*`` flags it would set.
    """
    from stella.errors import UsageError

    if workers is None:
        return list(beam_args)
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, not {workers}")
    runner = next((a.split("=", 1)[1] for a in runner_args(beam_args) if a.startswith("--runner=")), "")
    if runner != OFFLINE_RUNNER:
        raise UsageError(
            f"--workers sizes the embedded runner; {runner} takes its own options (e.g. --num_workers)",
            details={"runner": runner},
        )
    clashing = [a for a in beam_args if a.startswith(("--direct_num_workers", "--direct_running_mode"))]
    if clashing:
        raise UsageError(f"--workers sets {', '.join(clashing)} itself; give one or the other")
    if workers == 1:
        return list(beam_args)
    return [*beam_args, "--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]


def worker_count(options: PipelineOptions) -> int:
    """How many workers this run has on the embedded runner (what ``--workers N`` set), else 1.

    A step that runs alone while the others idle (the Trivy profiles' database and
    tarball) may use this many threads. Beam's own rule for ``--direct_num_workers=0``
    (one per CPU) applies. Other runners size their workers themselves, out of this
    process's sight, so a step there stays on one thread.
    """
    import os

    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    if options.view_as(StandardOptions).runner not in (OFFLINE_RUNNER, None):
        return 1
    workers = int(options.view_as(DirectOptions).direct_num_workers)
    return workers if workers > 0 else os.cpu_count() or 1


def quiet_workers(beam_args: Sequence[str]) -> list[str]:
    """Beam's SDK workers log at WARNING unless the user chose a level (the CLI's ``-v`` keeps INFO).

    Multi-process workers otherwise print dozens of INFO lines (gRPC channels, bundle
    processors) that bury our progress; the flag changes nothing in the bundle.
    """
    args = list(beam_args)
    if any(a.startswith("--default_sdk_harness_log_level") for a in args):
        return args
    return [*args, "--default_sdk_harness_log_level=WARNING"]


def pipeline_options(beam_args: Sequence[str]) -> PipelineOptions:
    return PipelineOptions(runner_args(beam_args))


def beam_option_strings() -> frozenset[str]:
    """Every ``--flag`` a PipelineOptions class defines (runner options included)."""
    parser = _option_registry()
    return frozenset(s for action in parser._actions for s in action.option_strings)


def _option_registry() -> argparse.ArgumentParser:
    from apache_beam.options.pipeline_options import _BeamArgumentParser

    from stella.errors import UsageError

    with contextlib.suppress(ImportError):  # Dask's options exist only when its runner is installed
        import apache_beam.runners.dask.dask_runner  # noqa: F401

    class _Registry(_BeamArgumentParser):  # type: ignore[misc]
        def error(self, message: str) -> NoReturn:
            raise UsageError(f"Beam option: {message}")

    parser = _Registry(allow_abbrev=False, add_help=False)
    for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
        cls._add_argparse_args(parser)
    return parser


def validate_beam_args(beam_args: Sequence[str], *, own_options: Iterable[str] = ()) -> list[str]:
    """Accept only options Beam's PipelineOptions registry defines; anything else is a usage error.

    Beam itself drops an unknown flag with a log warning, so a typo (``--runnr=dask``) or
    one of our own options misspelt (``--sign-keys``) would silently change the result.
    The suggestion draws on ``own_options`` (the command's flags) and Beam's.

    Raises:
        UsageError: an unknown option, a stray argument, or a value Beam's parser refuses.
    """
    from stella.cli.parser import unknown_option_error

    args = list(beam_args)
    if not args:
        return args
    parser = _option_registry()
    _known, unknown = parser.parse_known_args(args)
    if unknown:
        candidates = [*own_options, *(s for a in parser._actions for s in a.option_strings)]
        raise unknown_option_error(unknown[0], candidates, where="export run")
    return args
