"""``stella keys generate | id | trust-root``: make signing keys and the files verifiers pin.

Keys are made here rather than with openssl so that the two kinds the signer port
accepts (ECDSA P-256, Ed25519) come out in the exact formats it reads, with the private
file at mode 0600 and never overwriting an existing key.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from stella.bundle.trust import build_trust_root
from stella.cli.common import plural
from stella.errors import ConflictError, NotFoundError, UsageError
from stella.guards.files import check_file_arg, read_user_file
from stella.signers.interface import load_verifier
from stella.signers.registry import generate_key, key_reference, load_signer

__all__ = ["register"]

_KINDS = ("ecdsa-p256", "ed25519")
_FORMATS = ("pkcs8", "cosign")


def register(groups: Any) -> None:
    keys = groups.add_parser("keys", help="generate signing keys and trust roots")
    commands = keys.add_subparsers(dest="command", metavar="COMMAND")

    generate = commands.add_parser(
        "generate",
        help="write PREFIX.key (private, 0600) and PREFIX.pub (public PEM); print the key id",
        description="ecdsa-p256 also yields a cosign-style blob signature (openssl/cosign verify it); "
        "ed25519 signs the DSSE envelopes only. Both sign deterministically.",
    )
    generate.add_argument("--type", required=True, choices=_KINDS, dest="kind", help="key algorithm")
    generate.add_argument("--out", required=True, metavar="PREFIX", help="writes PREFIX.key and PREFIX.pub")
    generate.add_argument(
        "--password-env",
        metavar="VAR",
        help="encrypt the private key with the password in this environment variable",
    )
    generate.add_argument(
        "--format",
        choices=_FORMATS,
        default="pkcs8",
        help="pkcs8 PEM (default) or cosign's encrypted cosign.key (needs --password-env)",
    )
    generate.set_defaults(handler=_generate)

    public = commands.add_parser(
        "public",
        help="write the public key of any key reference (PEM file, env://, cosign://, pkcs11:) as PEM",
        description="For keys that never leave a token: export the public half to give to verifiers.",
    )
    public.add_argument(
        "ref", metavar="REF", help="key reference: PEM file, env://VAR, cosign://FILE, pkcs11:…"
    )
    public.add_argument(
        "--out", required=True, metavar="FILE", help="where the public PEM goes (never overwritten)"
    )
    public.set_defaults(handler=_public)

    key_id = commands.add_parser(
        "id", help="print the key id (sha256 of the SubjectPublicKeyInfo) of a public key"
    )
    key_id.add_argument("public", metavar="PUB", help="public key PEM file")
    key_id.set_defaults(handler=_key_id)

    root = commands.add_parser(
        "trust-root", help="write a trust-root file pinning public keys (docs/trust-root.md)"
    )
    root.add_argument("public", nargs="+", metavar="PUB", help="public key PEM files to trust")
    root.add_argument(
        "--out", required=True, metavar="FILE", help="trust-root file to write (never overwritten)"
    )
    root.add_argument("--tenant", action="append", default=[], help="only for these tenants (repeatable)")
    root.add_argument("--profile", action="append", default=[], help="only for these profiles (repeatable)")
    root.add_argument(
        "--minimum-generated-at", metavar="TIME", help="refuse bundles older than this (RFC 3339)"
    )
    root.set_defaults(handler=_trust_root)


def _generate(args: argparse.Namespace) -> int:
    password: bytes | None = None
    if args.password_env:
        value = os.environ.get(args.password_env)
        if value is None:
            raise UsageError(f"--password-env {args.password_env}: the variable is not set")
        password = value.encode("utf-8")
    if args.format == "cosign" and password is None:
        raise UsageError("--format cosign keys are always encrypted: give --password-env VAR")
    private = Path(check_file_arg(f"{args.out}.key", "--out"))
    public = Path(check_file_arg(f"{args.out}.pub", "--out"))
    if private.parent and not private.parent.is_dir():
        raise NotFoundError(f"folder {private.parent} does not exist", details={"path": str(private.parent)})
    key_id = generate_key(args.kind, private, public, password=password, key_format=args.format)
    ref = key_reference(private, key_format=args.format, password_env=args.password_env)
    args.output.result({"keyId": key_id, "private": str(private), "public": str(public), "signKeyRef": ref})
    if not args.output.json:
        print(f"key id      {key_id}")
        print(f"private     {private}  (mode 0600; sign with --sign-key {ref})")
        print(f"public      {public}  (give to verifiers: stella export verify BUNDLE --key {public})")
    return 0


def _public(args: argparse.Namespace) -> int:
    signer = load_signer(args.ref, environ=os.environ)
    out = Path(check_file_arg(args.out, "--out"))
    if out.exists():
        raise ConflictError(f"refusing to overwrite existing file {out}", details={"path": str(out)})
    out.write_bytes(signer.public_key_pem())
    args.output.result({"keyId": signer.key_id, "public": str(out)})
    if not args.output.json:
        print(f"key id      {signer.key_id}")
        print(f"public      {out}")
    return 0


def _read_public(name: str) -> bytes:
    return read_user_file(name, "public key")


def _key_id(args: argparse.Namespace) -> int:
    key_id = load_verifier(_read_public(args.public)).key_id
    args.output.result({"keyId": key_id, "public": args.public})
    if not args.output.json:
        print(key_id)
    return 0


def _trust_root(args: argparse.Namespace) -> int:
    out = Path(check_file_arg(args.out, "--out"))
    if out.exists():
        raise ConflictError(f"refusing to overwrite existing trust root {out}", details={"path": str(out)})
    data = build_trust_root(
        [_read_public(name) for name in args.public],
        tenants=args.tenant,
        profiles=args.profile,
        minimum_generated_at=args.minimum_generated_at,
    )
    out.write_bytes(data)
    args.output.result({"trustRoot": str(out), "keys": len(args.public)})
    if not args.output.json:
        print(f"trust root  {out}  ({plural(len(args.public), 'key')})")
    return 0
