"""Signing a bundle, and checking its signatures: the one signature layer of every profile.

What a signed bundle carries under ``signatures/`` (BRIEF contract 6):

=================================  ==========================================================
``signatures/export.dsse.json``     DSSE envelope (standard PAE) whose payload is ``export.json``
``signatures/provenance.dsse.json`` DSSE envelope, payload type ``application/vnd.in-toto+json``,
                                    whose payload is ``provenance.json``
``signatures/export.sig``           cosign-style blob signature of ``export.json`` (base64 DER
                                    ECDSA P-256 over SHA-256): ECDSA keys only, since no
                                    cosign/openssl check accepts an Ed25519 one
``signatures/signer.pub``           the signer's public key: lets a report name the key;
                                    trust never comes from it
=================================  ==========================================================

Every file is a pure function of the bundle and the key (RFC 8785 envelopes, Ed25519 or
RFC 6979 ECDSA), so a signed bundle is byte-identical across reruns.

Checking follows DSSE protocol.md and in-toto validation.md, numbered in
:meth:`_Checker.run`. Each problem carries the exit code it maps to: 4 when a signature
is missing, malformed, does not verify, or does not cover the bytes present; 5 when it
verifies but the key is not trusted or the signature belongs to another export (replay,
mix-and-match). The first problem stops the layer: later checks presuppose earlier ones.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from stella.attest.cosign_blob import sign_blob
from stella.attest.dsse import VerifiedEnvelope, b64decode_any, open_envelope, sign_envelope
from stella.attest.intoto import PAYLOAD_TYPE as INTOTO_PAYLOAD_TYPE
from stella.bundle.paths import (
    BLOB_SIGNATURE,
    MANIFEST,
    MANIFEST_ENVELOPE,
    PROVENANCE,
    PROVENANCE_ENVELOPE,
    SIGNATURE_FILES,
    SIGNATURES_DIR,
    SIGNER_KEY,
)
from stella.canonical import dumps
from stella.errors import BundleIntegrityError, SignatureError, TrustError, UsageError
from stella.guards import strictjson
from stella.signers.interface import ECDSA_P256_SHA256, PublicKeyVerifier, Signer, load_verifier

if TYPE_CHECKING:
    from stella.bundle.trust import TrustPolicy

__all__ = [
    "MANIFEST_PAYLOAD_TYPE",
    "Problem",
    "SignatureCheck",
    "check_signatures",
    "sign_bundle",
]

_LOG = logging.getLogger(__name__)

# StellaOps names its DSSE payload types application/vnd.stellaops.<thing>+json.
MANIFEST_PAYLOAD_TYPE: Final = "application/vnd.stellaops.export.manifest+json"

CHECKSUM: Final = BundleIntegrityError.code
SIGNATURE: Final = SignatureError.code
TRUST: Final = TrustError.code


def sign_bundle(staging: Path, signer: Signer) -> list[str]:
    """Write the ``signatures/`` files over the finished ``export.json`` and ``provenance.json``.

    Runs in the driver (signers hold key handles that do not pickle), after every other
    file exists: signatures are the last thing a bundle gets. Returns the files written.
    """
    if not signer.deterministic:
        _LOG.warning(
            "key %s signs with random nonces: the bundle is valid but not byte-identical across runs",
            signer.key_id,
        )
    manifest = (staging / MANIFEST).read_bytes()
    provenance = (staging / PROVENANCE).read_bytes()
    files = {
        MANIFEST_ENVELOPE: dumps(sign_envelope(manifest, MANIFEST_PAYLOAD_TYPE, signers=[signer])),
        PROVENANCE_ENVELOPE: dumps(sign_envelope(provenance, INTOTO_PAYLOAD_TYPE, signers=[signer])),
        SIGNER_KEY: signer.public_key_pem(),
    }
    if signer.algorithm == ECDSA_P256_SHA256:
        files[BLOB_SIGNATURE] = sign_blob(manifest, signer=signer)
    (staging / SIGNATURES_DIR).mkdir(exist_ok=True)
    for name, data in sorted(files.items()):
        (staging / name).write_bytes(data)
    return sorted(files)


@dataclass(frozen=True)
class Problem:
    """One failed check: the file to blame, why, and the error code it maps to."""

    path: str
    reason: str
    code: str


@dataclass
class SignatureCheck:
    """The signature layer's verdict.

    ``status``: ``unsigned``; ``trusted`` (verified with a key the caller trusts);
    ``untrusted`` (consistent with the bundle's own ``signer.pub``, which proves nothing
    about who signed); ``failed``.
    """

    status: str
    key_id: str | None = None
    algorithm: str | None = None
    problems: list[Problem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "keyId": self.key_id, "algorithm": self.algorithm, "files": self.files}


class _Stop(Exception):
    """Internal: the first problem ends the layer."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.reason)
        self.problem = problem


def _fail(path: str, reason: str, code: str = SIGNATURE) -> _Stop:
    return _Stop(Problem(path, reason, code))


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _subject_digest(statement_bytes: bytes | None, name: str) -> str | None:
    """The ``sha256:`` digest a statement claims for ``name``; None if unreadable (unsigned input)."""
    if statement_bytes is None:
        return None
    try:
        statement = strictjson.loads(statement_bytes, what="provenance.json", error=BundleIntegrityError)
        for subject in statement["subject"]:
            if subject["name"] == name:
                return "sha256:" + str(subject["digest"]["sha256"])
    except (BundleIntegrityError, KeyError, TypeError):
        return None
    return None


def _describe_manifest(payload: bytes) -> str:
    try:
        manifest = strictjson.loads(payload, what="export.json", error=BundleIntegrityError)
        return f"exportId {manifest['exportId']}, generatedAt {manifest['generatedAt']}"
    except (BundleIntegrityError, KeyError, TypeError):
        return "an unreadable manifest"


class _Checker:
    def __init__(self, control: Mapping[str, bytes], present: Collection[str], trust: TrustPolicy | None):
        self.control = control
        self.present = present
        self.trust = trust

    def run(self) -> SignatureCheck:
        present_sigs = sorted(p for p in self.present if p in SIGNATURE_FILES)
        # 0. Signed at all? A partial signature set means something was deleted.
        if MANIFEST_ENVELOPE not in self.control:
            if present_sigs:
                raise _fail(MANIFEST_ENVELOPE, f"missing, while {', '.join(present_sigs)} are present")
            if self.trust is not None:
                raise _fail(
                    MANIFEST_ENVELOPE,
                    f"missing: the bundle is not signed, and {self.trust.source} requires a signature",
                )
            return SignatureCheck(status="unsigned")
        embedded = self._embedded_key()
        verifiers: Sequence[PublicKeyVerifier] = self.trust.verifiers if self.trust else (embedded,)
        if self.trust is None:
            self._embedded_key_signs(embedded)
        # 1-3. DSSE protocol over export.json: decode, verify with a trusted key, check the type.
        manifest = self._open(MANIFEST_ENVELOPE, MANIFEST_PAYLOAD_TYPE, verifiers)
        key_id = manifest.key_ids[0]
        verifier = next(v for v in verifiers if v.key_id == key_id)
        # 4. The application uses the verified bytes: export.json must be exactly them.
        self._covers_manifest(manifest.payload)
        # The embedded key is only a label, but a wrong label is tampering.
        if embedded.key_id != key_id:
            raise _fail(SIGNER_KEY, f"is key {embedded.key_id}, but export.json was signed by {key_id}")
        # 5. The provenance statement: same signer, and it must be this bundle's provenance.
        provenance = self._open(PROVENANCE_ENVELOPE, INTOTO_PAYLOAD_TYPE, (verifier,))
        self._covers_provenance(provenance.payload)
        # 6. The cosign-style blob signature: present exactly when the key is ECDSA P-256.
        self._blob(verifier)
        return SignatureCheck(
            status="trusted" if self.trust is not None else "untrusted",
            key_id=key_id,
            algorithm=verifier.algorithm,
            files=sorted(p for p in SIGNATURE_FILES if p in self.control),
        )

    def _embedded_key(self) -> PublicKeyVerifier:
        data = self.control.get(SIGNER_KEY)
        if data is None:
            raise _fail(SIGNER_KEY, "missing: a signed bundle carries its signer's public key")
        try:
            verifier = load_verifier(data)
        except UsageError as exc:
            raise _fail(SIGNER_KEY, f"is not a P-256 or Ed25519 PEM public key: {exc.message}") from exc
        if verifier.public_key_pem() != data:
            raise _fail(SIGNER_KEY, "is not byte-for-byte the PEM the signer wrote (modified)")
        return verifier

    def _embedded_key_signs(self, embedded: PublicKeyVerifier) -> None:
        """Integrity-only mode: blame signer.pub when it verifies neither envelope."""
        for name in (MANIFEST_ENVELOPE, PROVENANCE_ENVELOPE):
            try:
                self._open(name, None, (embedded,))
                return
            except _Stop:
                continue
        raise _fail(SIGNER_KEY, "verifies neither DSSE envelope: modified, or not the key that signed")

    def _open(
        self, name: str, payload_type: str | None, verifiers: Sequence[PublicKeyVerifier]
    ) -> VerifiedEnvelope:
        data = self.control.get(name)
        if data is None:
            raise _fail(name, "missing")
        try:
            envelope = strictjson.loads(data, what=name, error=SignatureError)
        except SignatureError as exc:
            raise _fail(name, exc.message) from exc
        try:
            verified = open_envelope(envelope, verifiers=verifiers, payload_type=payload_type)
        except TrustError as exc:
            if self.trust is None:
                raise _fail(name, f"{exc.message} (not the key in {SIGNER_KEY})") from exc
            raise _fail(name, f"{exc.message} by {self.trust.source}", TRUST) from exc
        except (SignatureError, UsageError) as exc:
            raise _fail(name, exc.message) from exc
        # DSSE leaves the envelope's bytes and keyid hint unauthenticated; we wrote both
        # canonically, so any other spelling is a modification and is named as one.
        signatures = envelope.get("signatures", [])
        if len(signatures) != 1:
            raise _fail(name, f"carries {len(signatures)} signatures; a bundle envelope carries one")
        sig = b64decode_any(signatures[0].get("sig"), what="sig")
        canonical = dumps(
            {
                "payload": base64.b64encode(verified.payload).decode("ascii"),
                "payloadType": verified.payload_type,
                "signatures": [{"keyid": verified.key_ids[0], "sig": base64.b64encode(sig).decode("ascii")}],
            }
        )
        if canonical != data:
            raise _fail(
                name, "is not the canonical envelope the signer wrote (keyid hint or encoding modified)"
            )
        return verified

    def _covers_manifest(self, signed: bytes) -> None:
        present = self.control[MANIFEST]
        if signed == present:
            return
        # Which file is foreign? If the bundle's own provenance agrees with export.json,
        # the files belong together and the signature came from elsewhere (replay).
        if _subject_digest(self.control.get(PROVENANCE), MANIFEST) == _sha256(present):
            raise _fail(
                MANIFEST_ENVELOPE,
                f"is a valid signature over another export's manifest ({_describe_manifest(signed)}): "
                "replayed or mixed in from another bundle",
                TRUST,
            )
        raise _fail(
            "export.json",
            f"modified after signing: digest {_sha256(present)}, the signed manifest's is {_sha256(signed)}",
        )

    def _covers_provenance(self, signed: bytes) -> None:
        manifest_digest = _sha256(self.control[MANIFEST])
        if _subject_digest(signed, MANIFEST) != manifest_digest:
            raise _fail(
                PROVENANCE_ENVELOPE,
                "is a valid signature over provenance that does not bind this export.json: "
                "replayed or mixed in from another bundle",
                TRUST,
            )
        present = self.control.get(PROVENANCE)
        if present is None:
            raise _fail("provenance.json", "listed in the signed bundle but missing", CHECKSUM)
        if signed != present:
            raise _fail(
                "provenance.json",
                f"modified after signing: digest {_sha256(present)}, the signed statement's is {_sha256(signed)}",
            )

    def _blob(self, verifier: PublicKeyVerifier) -> None:
        data = self.control.get(BLOB_SIGNATURE)
        if verifier.algorithm != ECDSA_P256_SHA256:
            if data is not None:
                raise _fail(BLOB_SIGNATURE, f"present, but a {verifier.algorithm} signer writes none")
            return
        if data is None:
            raise _fail(BLOB_SIGNATURE, "missing: an ECDSA P-256 signer always writes it")
        try:
            der = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _fail(BLOB_SIGNATURE, f"is not base64: {exc}") from exc
        if base64.b64encode(der) != data:
            raise _fail(BLOB_SIGNATURE, "is not the exact base64 the signer wrote (modified)")
        try:
            verifier.verify(self.control[MANIFEST], der)
        except SignatureError as exc:
            raise _fail(BLOB_SIGNATURE, f"does not verify over export.json: {exc.message}") from exc


def check_signatures(
    control: Mapping[str, bytes], present: Collection[str], *, trust: TrustPolicy | None
) -> SignatureCheck:
    """Check every signature file of a bundle.

    ``control`` holds the bytes of ``export.json``, ``provenance.json`` and
    ``signatures/*``; ``present`` every path in the bundle. With ``trust=None`` the
    signatures are checked against the bundle's own ``signer.pub``: that catches damage,
    not forgery, and the verdict says ``untrusted``.
    """
    try:
        return _Checker(control, present, trust).run()
    except _Stop as stop:
        return SignatureCheck(status="failed", problems=[stop.problem])
