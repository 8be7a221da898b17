"""``stella export verify | archive | decrypt`` and the signing flags of ``stella export run``.

The receiving side of a bundle: everything here works offline, on the folder and on the
``.tar.zst`` form, and trusts only the key or trust root given on the command line.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from stella.bundle.encrypt import AUTO_MODE, EncryptionSpec, parse_encryption
from stella.bundle.trust import record_seen
from stella.bundle.verify import failure, verify_bundle
from stella.cli.common import plural
from stella.cli.trust_flags import add_trust_arguments, print_verify, trust_from_args
from stella.encryption.interface import MODES
from stella.errors import NotFoundError, UsageError
from stella.guards.files import check_file_arg, check_folder_arg
from stella.signers.interface import Signer
from stella.signers.registry import KEY_REF_SCHEMES, load_signer

__all__ = [
    "add_run_arguments",
    "encryption_from_args",
    "register",
    "signer_from_args",
    "summary_fields",
]


def add_run_arguments(run: argparse.ArgumentParser) -> None:
    """Signing, encryption and archive flags of ``stella export run``."""
    run.add_argument(
        "--sign-key",
        metavar="REF",
        help="sign the bundle with this key: " + ", ".join(KEY_REF_SCHEMES),
    )
    run.add_argument(
        "--encrypt-to",
        action="append",
        default=[],
        metavar="RECIPIENT",
        help="encrypt the data/ payload for age1…, rsa:PUBLIC.pem or a pkcs11:… AES token key (repeatable)",
    )
    run.add_argument(
        "--encryption-mode",
        choices=(AUTO_MODE, *MODES),
        default=AUTO_MODE,
        help="age (stock `age -d` decrypts) or aes-gcm (RSA recipients); auto: age when every "
        "recipient is age1…, else aes-gcm",
    )
    run.add_argument("--archive", action="store_true", help="also write <out>/<exportId>.tar.zst")


def signer_from_args(args: argparse.Namespace) -> Signer | None:
    """Open the key before the pipeline runs, so a bad reference fails in a second, not after the run."""
    ref = getattr(args, "sign_key", None)
    return load_signer(ref, environ=os.environ) if ref else None


def encryption_from_args(args: argparse.Namespace) -> EncryptionSpec | None:
    return parse_encryption(
        getattr(args, "encrypt_to", []), getattr(args, "encryption_mode", AUTO_MODE), environ=os.environ
    )


def summary_fields(outcome: Any, signer: Signer | None) -> dict[str, Any]:
    options = outcome.manifest.get("options", {})
    return {
        "signedBy": signer.key_id if signer is not None else None,
        "encryption": options.get("encryption", {}).get("mode"),
        "archive": str(outcome.archive) if outcome.archive is not None else None,
    }


def register(commands: Any) -> None:
    verify = commands.add_parser(
        "verify",
        help="check a bundle (folder or .tar.zst) offline: signatures, trust, every digest and count",
        description="Exit codes: 0 ok, 3 content (digest, size, count, missing or extra file), "
        "4 signature (missing, malformed, not verifying, modified after signing), "
        "5 trust (unknown key, replayed signature, rollback, key not allowed for tenant/profile).",
    )
    verify.add_argument("bundle", metavar="BUNDLE", help="bundle folder or .tar.zst archive")
    add_trust_arguments(verify, "the one public key (PEM) to trust")
    verify.add_argument(
        "--record",
        action="store_true",
        help="after success, raise the trust root's lastSeen for this tenant/profile (rollback protection)",
    )
    verify.set_defaults(handler=_verify)

    archive = commands.add_parser("archive", help="write a bundle folder as one deterministic .tar.zst")
    archive.add_argument("bundle", metavar="BUNDLE", help="bundle folder")
    archive.add_argument(
        "--out", metavar="FILE", help="archive path (default: <exportId>.tar.zst beside BUNDLE)"
    )
    archive.set_defaults(handler=_archive)

    decrypt = commands.add_parser(
        "decrypt", help="verify an encrypted bundle and write its plaintext form to <out>/<exportId>"
    )
    decrypt.add_argument("bundle", metavar="BUNDLE", help="encrypted bundle folder or .tar.zst archive")
    decrypt.add_argument(
        "--identity",
        action="append",
        required=True,
        metavar="FILE|PKCS11-URI",
        help="age identity file (age-keygen), RSA private key PEM, or the pkcs11:… AES key the "
        "bundle was encrypted to (repeatable)",
    )
    decrypt.add_argument("--out", required=True, metavar="DIR", help="folder the plaintext bundle goes in")
    add_trust_arguments(decrypt, "verify signatures with this public key first")
    decrypt.add_argument(
        "--overwrite", action="store_true", help="replace a different plaintext bundle already in --out"
    )
    decrypt.set_defaults(handler=_decrypt)


def _verify(args: argparse.Namespace) -> int:
    if getattr(args, "server", None):
        from stella.cli import remote_cmd

        return remote_cmd.verify(args)  # BUNDLE is a run id on the server
    if args.record and not args.trust_root:
        raise UsageError("--record updates a trust root: give --trust-root FILE")
    result = verify_bundle(Path(args.bundle), trust=trust_from_args(args))
    report = result.report
    if report.ok:
        args.output.result(report.to_json())
    else:
        args.output.keep(report.to_json())
    if not args.output.json:
        print_verify(report)
    if not report.ok:
        raise failure(report)
    if args.record and result.manifest is not None:
        record_seen(Path(args.trust_root), result.manifest)
    return 0


def _archive(args: argparse.Namespace) -> int:
    from stella.bundle.finish import archive_bundle

    bundle = Path(args.bundle)
    if not os.path.isdir(check_folder_arg(args.bundle, "bundle folder")):
        raise NotFoundError(f"bundle folder {bundle} does not exist", details={"bundle": str(bundle)})
    target = archive_bundle(bundle, Path(check_file_arg(args.out, "--out")) if args.out else None)
    args.output.result({"bundle": str(bundle), "archive": str(target)})
    if not args.output.json:
        print(f"archive     {target}")
        print(f"verify with stella export verify {target}")
    return 0


def _decrypt(args: argparse.Namespace) -> int:
    from stella.bundle.decrypt import decrypt_bundle
    from stella.encryption.recipients import load_identities

    identities = load_identities(args.identity, environ=os.environ)
    outcome = decrypt_bundle(
        Path(args.bundle), identities, Path(args.out), trust=trust_from_args(args), overwrite=args.overwrite
    )
    summary = {
        "bundle": str(outcome.path),
        "exportId": outcome.export_id,
        "decryptedFiles": outcome.files,
        "signature": outcome.signature,
        "unchanged": outcome.unchanged,
    }
    args.output.result(summary)
    if not args.output.json:
        print(f"bundle      {outcome.path}")
        print(f"decrypted   {plural(outcome.files, 'file')}; plaintext verified against export.json")
        print(f"verify with stella export verify {outcome.path}")
    return 0
