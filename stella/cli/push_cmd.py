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
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stella.adapters.trivy.payload import OCI_DIR
from stella.bundle.encrypt import ciphertext_files
from stella.bundle.trust import TrustPolicy
from stella.bundle.verify import failure, iter_members, verify_bundle
from stella.cli.bundle_cmd import add_trust_arguments, trust_from_args
from stella.cli.common import emit_json, progress_line
from stella.errors import BundleIntegrityError, UsageError
from stella.guards import strictjson
from stella.targets.interface import check_egress
from stella.targets.oci import OciReference, push_layout

__all__ = ["ALLOWLIST_ENV", "PASSWORD_ENV", "push_bundle", "register"]

ALLOWLIST_ENV = "STELLA_EGRESS_ALLOWLIST"
PASSWORD_ENV = "STELLA_REGISTRY_PASSWORD"


def register(commands: Any) -> None:
    push = commands.add_parser(
        "push",
        help="push a Trivy bundle's OCI artifact to a registry (trivy:db, trivy:java-db)",
        description="Verifies the bundle (folder or .tar.zst; with --key/--trust-root its signatures "
        "too), then pushes its data/oci layout. Trivy pulls it with "
        "--db-repository HOST:PORT/REPO:2 (or --java-db-repository …:1). "
        "Exit codes as for verify (3, 4, 5), 8 egress denied, 13 registry failure.",
    )
    push.add_argument("bundle", metavar="BUNDLE", help="bundle folder or .tar.zst archive")
    add_trust_arguments(push, "verify signatures with this public key before pushing")
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
    trust: TrustPolicy | None = None,
    allowlist: tuple[str, ...] = (),
    allow_plain_http: bool = False,
    credentials: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Verify ``bundle`` (folder or ``.tar.zst``) and push its OCI layout to ``reference``.

    The whole bundle is verified first -- against ``trust`` when given, so an unsigned or
    foreign-signed bundle never reaches the registry -- and an archive's layout is then
    streamed into a private temporary folder (never beside the archive) for the upload;
    :func:`push_layout` checks every blob against its digest again as it sends it.

    Raises:
        NotFoundError: no bundle at ``bundle``.
        BundleIntegrityError, SignatureError, TrustError: the bundle does not verify.
        UsageError: the bundle carries no OCI layout or is encrypted, or the reference is malformed.
        EgressDeniedError: the registry is neither loopback nor allowlisted.
        RemoteError: the registry refused or failed.
    """
    ref = OciReference.parse(reference)
    check_egress(ref.host, ref.port, allowlist)  # refused before the bundle is even read
    checked = verify_bundle(bundle, trust=trust)
    if not checked.report.ok:
        raise failure(checked.report)
    manifest = checked.manifest or {}
    profile = manifest.get("profile", {}).get("name")
    if ciphertext_files(
        strictjson.loads(
            checked.control.get("provenance.json", b"{}"), what="provenance.json", error=BundleIntegrityError
        )
    ):
        raise UsageError(
            f"bundle {bundle.name} is encrypted: decrypt it first (stella export decrypt), then push",
            details={"bundle": str(bundle), "profile": profile},
        )
    with tempfile.TemporaryDirectory(prefix="stella-push-") as scratch:
        layout = bundle / OCI_DIR if bundle.is_dir() else _extract_layout(bundle, Path(scratch))
        if not (layout / "index.json").is_file():
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
        "signature": checked.report.signature.get("status"),
    }


def _extract_layout(archive: Path, scratch: Path) -> Path:
    """Copy the archive's ``data/oci/`` members into ``scratch`` (member names are checked safe)."""
    prefix = OCI_DIR + "/"
    for relative, stream in iter_members(archive):
        if relative.startswith(prefix):
            target = scratch / relative[len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as out:
                shutil.copyfileobj(stream, out, 1 << 20)
    return scratch


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
        trust=trust_from_args(args),
        allowlist=_allowlist(args.allow_host, os.environ),
        allow_plain_http=args.allow_plain_http,
        credentials=_credentials(args.username, os.environ),
    )
    if args.json:
        emit_json(result)
    else:
        print(f"pushed {result['exportId']} to {result['reference']} as {result['digest']}")
    return 0
