"""``stella export publish BUNDLE --target URL`` and the ``--target`` flags of ``export run``.

Targets are egress, so they are explicit configuration: the hosts must be on the
allowlist (``--allow-host`` or ``$STELLA_EGRESS_ALLOWLIST``; the loopback names need
no entry), checked for every target before the bundle is read. Registry credentials
come from ``--username`` and ``$STELLA_REGISTRY_PASSWORD``, never the command line;
object-storage credentials from Google's application-default credentials.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from stella.cli.egress_flags import add_egress_arguments, egress_from_args
from stella.cli.trust_flags import add_trust_arguments, trust_from_args
from stella.targets.distribute import RetryPolicy, check_targets, failed, parse_target, publish_bundle
from stella.targets.interface import Target, TargetResult

__all__ = [
    "add_target_arguments",
    "print_results",
    "publish_to",
    "register",
    "targets_from_args",
]


def add_target_arguments(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """The flags every command that publishes shares (export run, export publish)."""
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        required=required,
        metavar="URL",
        help="publish to file:///DIR[?keep=N], gs://BUCKET/PREFIX or oci://HOST[:PORT]/REPO[:TAG] (repeatable)",
    )
    add_egress_arguments(parser)


def targets_from_args(args: argparse.Namespace) -> list[Target]:
    """Parse ``--target`` flags; raises EgressDeniedError for a refused host, before any work."""
    egress = egress_from_args(args)
    targets = [parse_target(url, egress.policy, credentials=egress.credentials) for url in args.target]
    check_targets(targets)
    return targets


def publish_to(bundle: Path, targets: list[Target], args: argparse.Namespace) -> list[TargetResult]:
    """Verify ``bundle`` (with --key/--trust-root its signatures too) and publish it to ``targets``."""
    args.progress.note(f"publishing {bundle.name} to {len(targets)} target(s)...")
    return publish_bundle(
        bundle, targets, retry=RetryPolicy(attempts=args.retries), trust=trust_from_args(args)
    )


def print_results(results: list[TargetResult]) -> None:
    for result in results:
        where = result.location or (result.error or {}).get("message", "")
        tries = f" after {result.attempts} attempts" if result.attempts > 1 else ""
        print(f"{result.status:<10} {result.target}  {where}{tries}")


def register(commands: Any) -> None:
    publish = commands.add_parser(
        "publish",
        help="publish a finished bundle to file, object-storage or registry targets",
        description="Checks every target against the egress allowlist, verifies the bundle "
        "(with --key/--trust-root its signatures too), then publishes it to each target, "
        "retrying transient failures. Publishing the same bundle again is a no-op. "
        "Exit codes: 3/4/5 the bundle does not verify, 8 egress denied, 9 conflict, 13 remote failure.",
    )
    publish.add_argument("bundle", metavar="BUNDLE", help="bundle folder or .tar.zst archive")
    add_trust_arguments(publish, "verify signatures with this public key before publishing")
    add_target_arguments(publish, required=True)
    publish.set_defaults(handler=_publish)


def _publish(args: argparse.Namespace) -> int:
    targets = targets_from_args(args)
    results = publish_to(Path(args.bundle), targets, args)
    fields = {"bundle": args.bundle, "targets": [result.to_json() for result in results]}
    error = failed(results)
    if error is not None:
        args.output.keep(fields)  # the failure envelope lists every target too
        if not args.output.json:
            print_results(results)
        raise error
    args.output.result(fields)
    if not args.output.json:
        print_results(results)
    return 0
