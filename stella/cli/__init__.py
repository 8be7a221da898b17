"""The ``stella`` command line.

The CLI only parses, builds request objects, calls library code and renders results.
Errors are caught in exactly one place (:func:`main`) and mapped to the documented exit
codes of :mod:`stella.errors`; tracebacks appear only with ``--verbose``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from stella import __version__
from stella.errors import StellaError, UsageError
from stella.timefmt import format_time

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so one catch site maps it."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    from stella.cli import export_cmd, keys_cmd, ledger_cmd, mirror_cmd, policy_cmd, serve_cmd

    parser = _Parser(
        prog="stella", description="StellaOps Export Center: signed, reproducible evidence bundles."
    )
    parser.add_argument("--version", action="version", version=f"stella {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
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
        help="with --server: the tenant to act for (env STELLA_TENANT)",
    )
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", parser_class=_Parser)
    groups.required = True
    ledger_cmd.register(groups)
    export_cmd.register(groups)
    keys_cmd.register(groups)
    serve_cmd.register(groups)
    policy_cmd.register(groups)
    mirror_cmd.register(groups)
    demo = groups.add_parser(
        "demo", help="make a demo ledger (if missing), export it with json:raw and verify it"
    )
    demo.add_argument("--ledger", help="ledger location (default $STELLA_HOME/ledger, ~/.stella when unset)")
    demo.add_argument("--out", default="out", help="where bundles go (default ./out)")
    demo.add_argument("--records", type=int, default=5000, help="documents in the demo ledger (default 5000)")
    demo.add_argument("--json", action="store_true", help="print the result as JSON")
    demo.set_defaults(handler=export_cmd.run_demo)
    return parser


def _configure_logging(*, verbose: bool, quiet: bool) -> None:
    """Progress lines from our own packages on stderr (stdout stays for results)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("  %(message)s"))
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    for name in ("stella", "transforms", "pipelines", "runners"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in args_list or "--verbose" in args_list
    _configure_logging(verbose=verbose, quiet="-q" in args_list or "--quiet" in args_list)
    trace_id = uuid.uuid4().hex
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(args_list)
        if extra and not getattr(args, "accepts_beam_args", False):
            raise UsageError(f"unrecognized arguments: {' '.join(extra)}")
        args.beam_args = extra
        code: int = args.handler(args)
        return code
    except StellaError as exc:
        payload = exc.to_payload(
            trace_id=trace_id, timestamp=format_time(datetime.now(UTC).replace(microsecond=0))
        )
        if "--json" in args_list:
            print(json.dumps({"error": payload}, indent=2, sort_keys=True))
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        if verbose and exc.details:
            print(json.dumps(exc.details, indent=2, sort_keys=True, default=str), file=sys.stderr)
        if verbose and exc.__cause__ is not None:
            import traceback

            traceback.print_exception(exc.__cause__, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # the one place an unexpected error becomes exit code 1
        print(
            f"error [ERR_EXPORT_INTERNAL]: {type(exc).__name__}: {exc} (trace {trace_id}; -v for details)",
            file=sys.stderr,
        )
        if verbose:
            import traceback

            traceback.print_exc()
        return 1
