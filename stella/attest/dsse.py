"""DSSE envelopes (secure-systems-lab/dsse ``protocol.md`` and ``envelope.md``, v1.0).

Why DSSE: the signature covers the payload *type* and the exact payload bytes through
the pre-authentication encoding, so there is no canonicalisation step to get wrong and
a signature for one kind of document cannot be replayed as another.

``keyid`` is an unauthenticated hint (protocol.md): it orders the keys we try and tells
"unknown key" from "bad signature" in error messages, but never decides acceptance.
The caller receives the very bytes that were verified, never a re-parse of the envelope.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from stella.errors import SignatureError, TrustError, UsageError
from stella.signers.interface import Signer, Verifier

__all__ = [
    "MAX_SIGNATURES",
    "VerifiedEnvelope",
    "b64decode_any",
    "open_envelope",
    "pae",
    "sign_envelope",
    "verify_envelope",
]

# An envelope is untrusted input; each signature costs one verification per trusted key.
MAX_SIGNATURES: Final = 32

_B64_ALPHABET = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")


def pae(payload_type: str, payload: bytes) -> bytes:
    """``PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`` (protocol.md).

    ``LEN`` is the byte length as ASCII decimal without leading zeros; ``type`` is UTF-8.
    """
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def b64decode_any(text: object, *, what: str) -> bytes:
    """Decode standard or URL-safe base64, padded or not (envelope.md: verifiers MUST accept both).

    Raises:
        SignatureError: not a string, mixed alphabets, or not base64.
    """
    if not isinstance(text, str):
        raise SignatureError(f"malformed DSSE envelope: {what} is not a string")
    if not _B64_ALPHABET.fullmatch(text):
        raise SignatureError(f"malformed DSSE envelope: {what} is not base64")
    if re.search(r"[+/]", text) and re.search(r"[-_]", text):
        raise SignatureError(f"malformed DSSE envelope: {what} mixes standard and URL-safe base64")
    body = text.rstrip("=").translate(str.maketrans("-_", "+/"))
    if len(body) % 4 == 1:
        raise SignatureError(f"malformed DSSE envelope: {what} has an impossible base64 length")
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"malformed DSSE envelope: {what} is not base64: {exc}") from exc


def sign_envelope(payload: bytes, payload_type: str, *, signers: Sequence[Signer]) -> dict[str, Any]:
    """Sign ``PAE(payload_type, payload)`` with each signer, in the order given.

    Returns the envelope as a JSON-ready dict; serialise it with ``stella.canonical.dumps``
    so the file bytes are reproducible too.

    Raises:
        UsageError: no signers, duplicate keys, or an empty payload type.
    """
    if not signers:
        raise UsageError("sign_envelope needs at least one signer")
    if not payload_type:
        raise UsageError("DSSE payloadType must be a non-empty string")
    key_ids = [signer.key_id for signer in signers]
    if len(set(key_ids)) != len(key_ids):
        raise UsageError("the same key is given twice: a DSSE threshold counts distinct keys")
    message = pae(payload_type, payload)  # protocol.md "Signature definition"
    return {
        "payload": base64.b64encode(payload).decode("ascii"),
        "payloadType": payload_type,
        "signatures": [
            {"keyid": signer.key_id, "sig": base64.b64encode(signer.sign(message)).decode("ascii")}
            for signer in signers
        ],
    }


@dataclass(frozen=True, slots=True)
class VerifiedEnvelope:
    """What verification established: the verified bytes and which trusted keys signed them."""

    payload: bytes
    payload_type: str
    key_ids: tuple[str, ...]


def open_envelope(
    envelope: Mapping[str, Any],
    *,
    verifiers: Sequence[Verifier],
    threshold: int = 1,
    payload_type: str | None = None,
) -> VerifiedEnvelope:
    """Verify an envelope per protocol.md "Protocol" steps 1-4 and return what was verified.

    A ``(threshold, n)`` envelope is accepted when at least ``threshold`` *distinct*
    trusted keys each verify some signature. When ``payload_type`` is given, any other
    type is refused (step 4) even with valid signatures.

    Raises:
        UsageError: no verifiers, or a threshold outside ``1..len(verifiers)``.
        SignatureError: malformed envelope, wrong payload type, or a signature that
            claims a trusted key but does not verify (altered payload or signature).
        TrustError: signatures verify only under keys that are not trusted, or fewer
            distinct trusted keys than ``threshold`` signed.
    """
    # Refuse vacuous trust before looking at the input: an empty key set must never pass.
    trusted = {verifier.key_id: verifier for verifier in verifiers}
    if not trusted:
        raise UsageError("verify_envelope needs at least one trusted key; an empty key set verifies nothing")
    if not 1 <= threshold <= len(trusted):
        raise UsageError(
            f"threshold {threshold} must be between 1 and the {len(trusted)} distinct trusted keys"
        )

    # Step 1: decode payload, payloadType and signatures, rejecting malformed fields.
    if not isinstance(envelope, Mapping):
        raise SignatureError("malformed DSSE envelope: not a JSON object")
    body = b64decode_any(envelope.get("payload"), what="payload")
    declared_type = envelope.get("payloadType")
    if not isinstance(declared_type, str) or not declared_type:
        raise SignatureError("malformed DSSE envelope: payloadType is missing or not a non-empty string")
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise SignatureError("malformed DSSE envelope: signatures must be a non-empty list")
    if len(signatures) > MAX_SIGNATURES:
        raise SignatureError(f"DSSE envelope carries {len(signatures)} signatures; at most {MAX_SIGNATURES}")
    # Step 4, done early because it is cheap: an unexpected type is refused whatever signed it.
    if payload_type is not None and declared_type != payload_type:
        raise SignatureError(
            f"DSSE payloadType is {declared_type!r}, expected {payload_type!r}",
            details={"payloadType": declared_type, "expected": payload_type},
        )

    message = pae(declared_type, body)
    accepted: list[str] = []
    bad_trusted: list[str] = []
    unknown: list[str] = []
    for index, entry in enumerate(signatures):
        if not isinstance(entry, Mapping):
            raise SignatureError(f"malformed DSSE envelope: signatures[{index}] is not an object")
        sig = b64decode_any(entry.get("sig"), what=f"signatures[{index}].sig")
        hint = entry.get("keyid", "")
        if not isinstance(hint, str):
            raise SignatureError(f"malformed DSSE envelope: signatures[{index}].keyid is not a string")
        # Steps 2-3: the hint only orders the attempts; every trusted key may verify.
        order = sorted(trusted.values(), key=lambda verifier: verifier.key_id != hint)
        verified_by = next((verifier.key_id for verifier in order if _verifies(verifier, message, sig)), None)
        if verified_by is not None:
            if verified_by not in accepted:
                accepted.append(verified_by)
        elif hint in trusted:
            bad_trusted.append(hint)
        elif hint:
            unknown.append(hint)
        else:
            bad_trusted.append(f"signatures[{index}]")

    if len(accepted) >= threshold:
        return VerifiedEnvelope(payload=body, payload_type=declared_type, key_ids=tuple(sorted(accepted)))
    details = {"verifiedKeyIds": sorted(accepted), "threshold": threshold}
    if bad_trusted:
        raise SignatureError(
            f"DSSE signature by {', '.join(bad_trusted)} does not verify: the payload or signature was altered",
            details={**details, "failed": bad_trusted},
        )
    if accepted:
        raise TrustError(
            f"only {len(accepted)} distinct trusted key(s) signed; {threshold} required", details=details
        )
    if unknown:
        raise TrustError(
            f"DSSE envelope is signed by key(s) {', '.join(unknown)}, none of which is trusted",
            details={**details, "unknownKeyIds": unknown},
        )
    raise SignatureError("no DSSE signature verifies with a trusted key", details=details)


def verify_envelope(
    envelope: Mapping[str, Any],
    *,
    verifiers: Sequence[Verifier],
    threshold: int = 1,
    payload_type: str | None = None,
) -> bytes:
    """The verified payload bytes; see :func:`open_envelope` for the rules and errors."""
    return open_envelope(
        envelope, verifiers=verifiers, threshold=threshold, payload_type=payload_type
    ).payload


def _verifies(verifier: Verifier, message: bytes, signature: bytes) -> bool:
    try:
        verifier.verify(message, signature)
    except SignatureError:
        return False
    return True
