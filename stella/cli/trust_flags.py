"""The trust flags every command that reads a bundle shares, and how a verify report reads.

A module of its own so that the local commands (``bundle_cmd``, ``push_cmd``,
``mirror_cmd``) and the remote ones (``remote_cmd``) share them without importing each
other.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stella.bundle.trust import TrustPolicy, load_trust_root, trust_key
from stella.bundle.verify import VerifyReport

__all__ = ["add_trust_arguments", "print_verify", "trust_from_args"]


def add_trust_arguments(parser: argparse.ArgumentParser, key_help: str) -> None:
    """``--key PUB | --trust-root FILE``: every command that reads a bundle trusts the same way."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--key", metavar="PUB", help=key_help)
    group.add_argument("--trust-root", metavar="FILE", help="trust-root file (docs/trust-root.md)")


def trust_from_args(args: argparse.Namespace) -> TrustPolicy | None:
    if args.key:
        return trust_key(Path(args.key))
    if args.trust_root:
        return load_trust_root(Path(args.trust_root))
    return None


def print_verify(report: VerifyReport) -> None:
    signature = report.signature
    if report.ok:
        print(f"OK  {report.bundle}: {report.checked} files match export.json ({report.export_id})")
    else:
        print(f"FAILED  {report.bundle}: {len(report.mismatches)} problem(s)")
        for mismatch in report.mismatches:
            print(f"  {mismatch.path}: {mismatch.reason}")
    status = signature.get("status")
    if status == "trusted":
        print(f"signed by {signature['keyId']} ({signature['algorithm']}), trusted via {report.trust}")
    elif status == "untrusted":
        print(
            f"signatures NOT checked against a trusted key: consistent with the bundle's own key "
            f"{signature['keyId']}, which proves nothing; pass --key or --trust-root"
        )
    elif status == "unsigned":
        print("unsigned bundle: integrity only (nothing proves who made it)")
