# PYTHON_ARGCOMPLETE_OK
"""The ``stella`` command line.

The CLI only parses, builds request objects, calls library code and renders results.
Errors are caught in exactly one place (:func:`main`) and mapped to the documented exit
codes of :mod:`stella.errors` (docs/cli.md); tracebacks appear only with ``--verbose``.

Conventions every command follows (docs/cli.md): unknown options are usage errors with a
suggestion (:mod:`stella.cli.parser`), Beam options only where a command runs a pipeline
and only if Beam defines them; ``--json`` prints one envelope on success and failure
(:mod:`stella.cli.output`); progress on stderr (:mod:`stella.cli.progress`).
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from types import FrameType
from typing import TextIO

from runners.warm import WarmPool, start_for
from stella.cli.output import Output
from stella.cli.parser import (
    CommandParser,
    command_path,
    leaf_parser,
    split_passthrough,
    unknown_option_error,
)
from stella.cli.progress import Progress, ProgressHandler, own_stderr
from stella.errors import StellaError, UsageError
from stella.runtime import relax_gc
from stella.timefmt import format_time

__all__ = ["EXIT_INTERRUPTED", "build_parser", "command_group", "main", "parse_command", "version_text"]

EXIT_INTERRUPTED = 130
_OUR_LOGGERS = ("stella", "transforms", "pipelines", "runners")
_NOISY_LOGGERS = ("apache_beam", "grpc", "absl", "distributed", "urllib3", "google")


def version_text() -> str:
    """Tool, Beam, Trivy DB schemas and the git commit: what a bug report needs."""
    import apache_beam

    from stella import __version__
    from stella.adapters.trivy.artifact import TRIVY_DB, TRIVY_JAVA_DB

    return (
        f"stella {__version__} (commit {_git_commit()})\n"
        f"Apache Beam {apache_beam.__version__}\n"
        f"Trivy DB schema {TRIVY_DB.schema_version}, Trivy Java DB schema {TRIVY_JAVA_DB.schema_version}"
    )


def _git_commit() -> str:
    """The checkout's commit when running from one (editable installs), else ``unknown``."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return "unknown"
    try:
        found = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return found.stdout.strip() or "unknown"


class _Version(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(
            option_strings, dest, nargs=0, help="print versions (tool, Beam, Trivy DB schema, commit)"
        )

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        print(version_text())
        parser.exit(0)


# Global options that take a value, so the group named after them can be found.
_GLOBAL_VALUED = ("--server", "--tenant")


def command_group(argv: Sequence[str]) -> str | None:
    """The command group the arguments name (``ledger`` in ``stella --tenant t ledger …``)."""
    items = iter(split_passthrough(argv)[0])
    for item in items:
        if item in _GLOBAL_VALUED:
            next(items, None)
        elif not item.startswith("-"):
            return item
    return None


def build_parser(group: str | None = None) -> CommandParser:
    """The whole command tree, or, for ``group="ledger"``, only the ledger commands.

    The other groups import Beam and the pipelines (about a second of CPU before any
    work); ``stella ledger …`` uses none of it, and its parse is the same either way
    because everything after ``ledger`` is the ledger parser's.
    """
    from stella.cli import ledger_cmd

    parser = CommandParser(
        prog="stella",
        description="StellaOps Export Center: signed, reproducible evidence bundles.",
        epilog="docs/cli.md documents every command, the --json contract and the exit codes.",
    )
    parser.add_argument("--version", action=_Version)
    parser.add_argument(
        "--server",
        default=os.environ.get("STELLA_SERVER") or None,
        metavar="URL",
        help="run export commands through an Export Center API (env STELLA_SERVER; token in STELLA_TOKEN)",
    )
    parser.add_argument(
        "--tenant",
        dest="server_tenant",
        default=os.environ.get("STELLA_TENANT") or None,
        help="the tenant to act for, before the command (env STELLA_TENANT)",
    )
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", parser_class=CommandParser)
    ledger_cmd.register(groups)
    if group == "ledger":
        return parser
    from stella.cli import export_cmd, keys_cmd, mirror_cmd, policy_cmd, serve_cmd

    export_cmd.register(groups)
    keys_cmd.register(groups)
    serve_cmd.register(groups)
    policy_cmd.register(groups)
    mirror_cmd.register(groups)
    export_cmd.register_demo(groups)
    return parser


def _configure_logging(progress: Progress, stream: TextIO, *, verbose: bool, quiet: bool) -> None:
    """Our packages' logs feed the progress display; everyone else's stay quiet unless -v.

    ``STELLA_LOG_FORMAT=json`` makes them structured JSON lines carrying the run's trace
    id instead (docs/distribution.md), for log shippers.
    """
    handler: logging.Handler = ProgressHandler(progress, stream)
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    if os.environ.get("STELLA_LOG_FORMAT", "").lower() == "json":
        from stella.telemetry.logs import JsonFormatter

        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter())
    for name in _OUR_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger().setLevel(logging.INFO if verbose else logging.ERROR)


@contextmanager
def _interrupt_flag() -> Iterator[threading.Event]:
    """Remember a Ctrl-C even when a library (Beam) turns it into another exception."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        flag.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def _complete(parser: CommandParser) -> None:
    """Shell completion (argcomplete): answers and exits only when the shell asks."""
    if "_ARGCOMPLETE" in os.environ:
        import argcomplete

        argcomplete.autocomplete(parser)


def _timestamp() -> str:
    return format_time(datetime.now(UTC).replace(microsecond=0))


def parse_command(parser: CommandParser, argv: Sequence[str]) -> tuple[argparse.Namespace, str]:
    """Parse ``argv`` as :func:`main` does, without running anything: ``(args, command words)``.

    Raises:
        UsageError: an unknown command or option, or a Beam option Beam does not define.
    """
    ours, passthrough = split_passthrough(argv)
    args, extra = parser.parse_known_args(ours)
    leaf = leaf_parser(parser, args)
    command = command_path(parser, args)
    option_strings = leaf.option_strings() if isinstance(leaf, CommandParser) else []
    if not hasattr(args, "handler"):
        args.beam_args = []
    elif getattr(args, "accepts_beam_args", False):
        from runners.options import validate_beam_args

        args.beam_args = validate_beam_args([*extra, *passthrough], own_options=option_strings)
    elif extra or passthrough:
        raise unknown_option_error((extra or passthrough)[0], option_strings, where=command)
    else:
        args.beam_args = []
    return args, command


def _dispatch(parser: CommandParser, argv: list[str], output: Output, progress: Progress) -> int:
    args, output.command = parse_command(parser, argv)
    output.json = bool(getattr(args, "json", output.json))
    if not hasattr(args, "handler"):
        leaf_parser(parser, args).print_help()
        return 0
    if getattr(args, "tenant", []) is None:
        args.tenant = getattr(args, "server_tenant", None)  # `stella --tenant T command` counts too
    args.output, args.progress = output, progress
    output.before_result = progress.close
    from stella.targets.egress import policy_from
    from stella.telemetry.tracing import configure_from_env

    # Off unless STELLA_OTEL_EXPORTER names an exporter; a collector is egress like any target.
    configure_from_env(egress=policy_from((), os.environ).check)
    with progress:
        code: int = args.handler(args)
    return code


# Errors that say the path the user named is unusable (too long, a loop, through a file, not allowed),
# whichever command met it: a usage error naming the path, never "a bug".
_PATH_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTDIR, errno.EACCES})


def _path_problem(exc: OSError) -> StellaError | None:
    if exc.errno not in _PATH_ERRNOS or exc.filename is None:
        return None
    from stella.guards.files import path_error

    return path_error(os.fsdecode(exc.filename), "path")


def main(argv: Sequence[str] | None = None) -> int:
    relax_gc()  # before the commands' imports: see stella.runtime
    args_list = list(sys.argv[1:] if argv is None else argv)
    ours = split_passthrough(args_list)[0]
    verbose = "-v" in ours or "--verbose" in ours
    quiet = "-q" in ours or "--quiet" in ours
    output = Output(command="", json="--json" in ours, quiet=quiet, verbose=verbose)
    stream = own_stderr()
    progress = Progress.for_terminal(quiet=quiet, stream=stream)
    _configure_logging(progress, stream, verbose=verbose, quiet=quiet)
    warm: WarmPool | None = None
    trace_id = uuid.uuid4().hex
    with _interrupt_flag() as interrupted:
        try:
            if any("\x00" in arg for arg in args_list):  # no shell can pass one; no path may hold one
                raise UsageError("an argument contains a NUL character")
            parser = build_parser(command_group(args_list))
            warm = start_for(args_list, verbose=verbose)  # `export run --workers N`: forked, all imported
            _complete(parser)
            if not args_list:
                parser.print_help()
                return 0
            try:
                return _dispatch(parser, args_list, output, progress)
            except OSError as exc:
                problem = _path_problem(exc)
                if problem is None:
                    raise
                raise problem from exc
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except StellaError as exc:
            if interrupted.is_set():
                print("interrupted", file=sys.stderr)
                return EXIT_INTERRUPTED
            output.failure(exc.to_payload(trace_id=trace_id, timestamp=_timestamp()))
            print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
            if verbose and exc.details:
                import json

                print(json.dumps(exc.details, indent=2, sort_keys=True, default=str), file=sys.stderr)
            if verbose and exc.__cause__ is not None:
                import traceback

                traceback.print_exception(exc.__cause__, file=sys.stderr)
            return exc.exit_code
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        except Exception as exc:  # the one place an unexpected error becomes exit code 1
            if interrupted.is_set():
                print("interrupted", file=sys.stderr)
                return EXIT_INTERRUPTED
            internal = StellaError(f"{type(exc).__name__}: {exc}", details={"traceId": trace_id})
            output.failure(internal.to_payload(trace_id=trace_id, timestamp=_timestamp()))
            print(
                f"error [ERR_EXPORT_INTERNAL]: {type(exc).__name__}: {exc} (trace {trace_id}; -v for details)",
                file=sys.stderr,
            )
            if verbose:
                import traceback

                traceback.print_exc()
            return 1
        finally:
            if warm is not None:
                warm.close()  # the processes no run took exit; a run's own have exited already
