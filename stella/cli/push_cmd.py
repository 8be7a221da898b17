"""``stella export push BUNDLE --to HOST[:PORT]/REPO[:TAG]``: a Trivy bundle's OCI artifact to a registry.

Pushing is egress, so it is explicit configuration (BRIEF contract 11): the destination
must be loopback or on the allowlist (``--allow-host``, or ``STELLA_EGRESS_ALLOWLIST``
as a comma-separated list), and plain HTTP is used only for loopback or with
``--allow-plain-http``. The bundle is verified against its manifest before a byte
leaves the machine: a registry should never serve what the bundle cannot vouch for.
Registry credentials come from ``--username`` and the ``STELLA_REGISTRY_PASSWORD``
environment variable, never from the command line, where other users could read them.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stella.adapters.trivy.payload import OCI_DIR
from stella.bundle.verify import verify_directory
from stella.cli.common import emit_json, progress_line
from stella.errors import BundleIntegrityError, UsageError
from stella.targets.interface import check_egress
from stella.targets.oci import OciReference, push_layout

__all__ = ["ALLOWLIST_ENV", "PASSWORD_ENV", "push_bundle", "register"]

ALLOWLIST_ENV = "STELLA_EGRESS_ALLOWLIST"
PASSWORD_ENV = "STELLA_REGISTRY_PASSWORD"


def register(commands: Any) -> None:
    push = commands.add_parser(
        "push",
        help="push a Trivy bundle's OCI artifact to a registry (trivy:db, trivy:java-db)",
        description="Verifies the bundle, then pushes its data/oci layout. Trivy pulls it with "
        "--db-repository HOST:PORT/REPO:2 (or --java-db-repository …:1).",
    )
    push.add_argument("bundle", metavar="BUNDLE")
    push.add_argument("--to", required=True, metavar="HOST[:PORT]/REPO[:TAG]", help="tag defaults to 2 or 1")
    push.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help=f"add a registry to the egress allowlist (repeatable; also ${ALLOWLIST_ENV}); loopback is always allowed",
    )
    push.add_argument(
        "--allow-plain-http",
        action="store_true",
        help="allow plain HTTP to a non-loopback registry (loopback may always use it)",
    )
    push.add_argument("--username", help=f"registry user name; the password is read from ${PASSWORD_ENV}")
    push.add_argument("--json", action="store_true", help="print the result as JSON")
    push.set_defaults(handler=_push)


def push_bundle(
    bundle: Path,
    reference: str,
    *,
    allowlist: tuple[str, ...] = (),
    allow_plain_http: bool = False,
    credentials: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Verify ``bundle`` and push its OCI layout to ``reference``; returns what was pushed.

    Raises:
        NotFoundError: no bundle at ``bundle``.
        BundleIntegrityError: the bundle does not match its manifest.
        UsageError: the bundle carries no OCI layout, or the reference is malformed.
        EgressDeniedError: the registry is neither loopback nor allowlisted.
        RemoteError: the registry refused or failed.
    """
    ref = OciReference.parse(reference)
    check_egress(ref.host, ref.port, allowlist)  # refused before the bundle is even read
    report, manifest, _control = verify_directory(bundle)
    if not report.ok:
        first = report.mismatches[0]
        raise BundleIntegrityError(
            f"refusing to push a bundle that does not match its manifest: {first.path}: {first.reason}",
            details=report.to_json(),
        )
    layout = bundle / OCI_DIR
    if not (layout / "index.json").is_file():
        profile = manifest.get("profile", {}).get("name")
        raise UsageError(
            f"bundle {bundle.name} (profile {profile}) carries no OCI layout; "
            "only trivy:db and trivy:java-db bundles can be pushed",
            details={"bundle": str(bundle), "profile": profile},
        )
    digest = push_layout(
        layout, reference, allow_plain_http=allow_plain_http, allowlist=allowlist, credentials=credentials
    )
    return {
        "bundle": str(bundle),
        "exportId": manifest.get("exportId"),
        "reference": reference,
        "digest": digest,
    }


def _allowlist(flags: list[str], environ: Mapping[str, str]) -> tuple[str, ...]:
    from_env = [entry.strip() for entry in environ.get(ALLOWLIST_ENV, "").split(",") if entry.strip()]
    return tuple(dict.fromkeys([*from_env, *flags]))


def _credentials(username: str | None, environ: Mapping[str, str]) -> tuple[str, str] | None:
    if username is None:
        return None
    password = environ.get(PASSWORD_ENV)
    if not password:
        raise UsageError(f"--username needs the password in ${PASSWORD_ENV}")
    return username, password


def _push(args: argparse.Namespace) -> int:
    progress_line(f"pushing {args.bundle} to {args.to}...")
    result = push_bundle(
        Path(args.bundle),
        args.to,
        allowlist=_allowlist(args.allow_host, os.environ),
        allow_plain_http=args.allow_plain_http,
        credentials=_credentials(args.username, os.environ),
    )
    if args.json:
        emit_json(result)
    else:
        print(f"pushed {result['exportId']} to {result['reference']} as {result['digest']}")
    return 0
