"""Recognising upstream documents from content and reading their identity and linksets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stella.documents.csaf import CsafFormat
from stella.documents.cyclonedx import CycloneDxFormat
from stella.documents.interface import DocumentFormat, ParsedDocument
from stella.documents.openvex import OpenVexFormat
from stella.documents.osv import OsvFormat
from stella.documents.spdx import SpdxFormat
from stella.errors import InputError

__all__ = ["FORMATS", "ParsedDocument", "recognise"]

# Order matters only for documents that look like two formats at once; the most
# specific markers come first.
FORMATS: tuple[DocumentFormat, ...] = (
    CycloneDxFormat(),
    SpdxFormat(),
    OpenVexFormat(),
    CsafFormat(),
    OsvFormat(),
)


def recognise(value: Any, *, digest: str) -> ParsedDocument:
    """Identify the format of a parsed JSON document and read its identity.

    Raises:
        InputError: the document matches no supported format, or is malformed for the
            format it claims to be.
    """
    if not isinstance(value, Mapping):
        raise InputError(f"document is a JSON {type(value).__name__}, not an object: no supported format")
    for fmt in FORMATS:
        if fmt.matches(value):
            return fmt.parse(value, digest=digest)
    raise InputError(
        "unrecognised document format (expected OSV, CycloneDX, SPDX 2.x, OpenVEX or CSAF 2.0); "
        f"top-level keys: {', '.join(sorted(map(str, value))[:8]) or '(none)'}"
    )
