"""Where things are in a bundle: the one list of its fixed paths (BRIEF contract 3).

A leaf module (it imports nothing of the project), so the writers (assemble, sign,
profiles' adapters), the readers (verify, trust, decrypt) and the targets name the same
paths without importing each other.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BLOB_SIGNATURE",
    "CONTROL_FILES",
    "DATA_DIR",
    "MANIFEST",
    "MANIFEST_ENVELOPE",
    "OCI_DIR",
    "PROVENANCE",
    "PROVENANCE_ENVELOPE",
    "REPORTS_DIR",
    "SIGNATURES_DIR",
    "SIGNATURE_FILES",
    "SIGNER_KEY",
]

MANIFEST: Final = "export.json"
PROVENANCE: Final = "provenance.json"
# Read before the payload: what every check of the rest depends on.
CONTROL_FILES: Final = (MANIFEST, PROVENANCE)

SIGNATURES_DIR: Final = "signatures"
MANIFEST_ENVELOPE: Final = f"{SIGNATURES_DIR}/export.dsse.json"
PROVENANCE_ENVELOPE: Final = f"{SIGNATURES_DIR}/provenance.dsse.json"
BLOB_SIGNATURE: Final = f"{SIGNATURES_DIR}/export.sig"
SIGNER_KEY: Final = f"{SIGNATURES_DIR}/signer.pub"
SIGNATURE_FILES: Final = (BLOB_SIGNATURE, MANIFEST_ENVELOPE, PROVENANCE_ENVELOPE, SIGNER_KEY)

# The profile's payload; the only subtree encryption touches.
DATA_DIR: Final = "data"
# The OCI image layout of an artifact profile (what ``stella export push`` sends).
OCI_DIR: Final = f"{DATA_DIR}/oci"
# What a profile did not export, and why.
REPORTS_DIR: Final = f"{DATA_DIR}/reports"
