"""The egress flags every command that sends a bundle out shares, and what they build.

``export run --target``, ``export publish``, ``export push`` and the launches of
``schedule tick``/``run-due`` all send bundles to hosts; they take the same allowlist,
plain-HTTP and registry-user flags and turn them into the same policy and credentials
here, so a rule added to one (a check, a help line) holds for all.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from stella.errors import UsageError
from stella.targets.egress import ALLOWLIST_ENV, EgressPolicy, policy_from
from stella.targets.oci import PASSWORD_ENV, registry_credentials

__all__ = ["Egress", "add_egress_arguments", "egress_from_args"]


@dataclass(frozen=True)
class Egress:
    """Where a command may send bundles, as whom, and how often it retries a transient failure."""

    policy: EgressPolicy
    credentials: tuple[str, str] | None
    retries: int


def add_egress_arguments(parser: argparse.ArgumentParser, *, retries: bool = True) -> None:
    """``--allow-host``, ``--allow-plain-http``, ``--username`` (and ``--retries`` where targets retry)."""
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="HOST[:PORT]|CIDR",
        help=f"add a destination to the egress allowlist (repeatable; also ${ALLOWLIST_ENV}); "
        "localhost, 127.0.0.1 and ::1 are always allowed",
    )
    parser.add_argument(
        "--allow-plain-http",
        action="store_true",
        help="allow plain HTTP to a non-loopback registry (loopback may always use it)",
    )
    parser.add_argument("--username", help=f"registry user name; the password is read from ${PASSWORD_ENV}")
    if retries:
        parser.add_argument(
            "--retries",
            type=int,
            default=3,
            metavar="N",
            help="attempts per target for transient failures (default 3)",
        )


def egress_from_args(args: argparse.Namespace) -> Egress:
    """The policy and credentials the flags (and the environment) give; a bad ``--retries`` is exit 2."""
    retries: int = getattr(args, "retries", 1)
    if retries < 1:
        raise UsageError("--retries must be at least 1", details={"retries": retries})
    return Egress(
        policy=policy_from(args.allow_host, os.environ, allow_plain_http=args.allow_plain_http),
        credentials=registry_credentials(args.username, os.environ),
        retries=retries,
    )
