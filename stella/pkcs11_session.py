"""PKCS#11 tokens, shared by the token signer and the token key wrapper.

One module parses RFC 7512 references, resolves PIN sources and opens logged-in
sessions, so :mod:`stella.signers.pkcs11` (``C_Sign``) and
:mod:`stella.encryption.pkcs11_wrap` (AES key wrapping) accept the same URIs, refuse
the same things and report the same errors. The reference::

    pkcs11:token=LABEL;object=LABEL[;id=%01][;serial=S][;type=private|secret-key]
          ?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:VAR

* path attributes (RFC 7512 §2.3) select the token and the key; values are
  percent-decoded; unknown attributes are refused rather than ignored;
* ``module-path`` names the PKCS#11 library (default: ``STELLA_PKCS11_MODULE`` in the
  injected environment);
* ``pin-source`` is ``env:VAR`` or ``file:PATH`` (§2.4); ``pin-value`` is refused so
  that PINs do not end up in logs and shell history.

python-pkcs11 is imported only when a session opens, so nothing here costs a user who
never names a token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, unquote_to_bytes

from stella.errors import NotFoundError, UsageError
from stella.guards.files import read_user_file

__all__ = ["MODULE_ENV_VAR", "Pkcs11Ref", "open_session", "parse_pkcs11_uri", "resolve_pin"]

MODULE_ENV_VAR: Final = "STELLA_PKCS11_MODULE"

_PATH_ATTRS: Final = frozenset({"token", "object", "id", "serial", "type"})
_QUERY_ATTRS: Final = frozenset({"module-path", "pin-source"})


@dataclass(frozen=True, slots=True)
class Pkcs11Ref:
    """A parsed ``pkcs11:`` reference; the PIN itself is resolved only when needed."""

    module_path: str
    token: str | None
    serial: str | None
    object: str | None
    object_id: bytes | None
    pin_source: str


def _attrs(text: str, sep: str, allowed: frozenset[str], where: str, ref: str) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for part in filter(None, text.split(sep)):
        name, eq, value = part.partition("=")
        if not eq:
            raise UsageError(f"PKCS#11 URI {where} attribute {part!r} has no '=' in {ref!r}")
        if name == "pin-value":
            raise UsageError("PKCS#11 URI pin-value is refused: use pin-source=env:VAR or file:PATH")
        if name not in allowed:
            raise UsageError(
                f"unsupported PKCS#11 URI {where} attribute {name!r}; supported: {', '.join(sorted(allowed))}",
                details={"attribute": name},
            )
        if name in attrs:
            raise UsageError(f"PKCS#11 URI attribute {name!r} given twice in {ref!r}")
        attrs[name] = value
    return attrs


def parse_pkcs11_uri(ref: str, *, environ: Mapping[str, str], key_type: str = "private") -> Pkcs11Ref:
    """Parse the RFC 7512 subset above; ``key_type`` is the one ``type=`` the caller can use
    (``private`` for signing keys, ``secret-key`` for the AES keys that wrap data keys).

    Raises:
        UsageError: not ``pkcs11:``, unknown attributes, no key selector, no module or PIN source.
    """
    if not ref.lower().startswith("pkcs11:"):
        raise UsageError(f"not a PKCS#11 URI: {ref!r}")
    path, _, query = ref[len("pkcs11:") :].partition("?")
    path_attrs = _attrs(path, ";", _PATH_ATTRS, "path", ref)
    query_attrs = _attrs(query, "&", _QUERY_ATTRS, "query", ref)
    if path_attrs.get("type", key_type) != key_type:
        raise UsageError(f"PKCS#11 URI type must be {key_type!r} here, not {path_attrs['type']!r}")
    object_label = unquote(path_attrs["object"]) if "object" in path_attrs else None
    object_id = unquote_to_bytes(path_attrs["id"]) if "id" in path_attrs else None
    if object_label is None and object_id is None:
        raise UsageError(f"PKCS#11 URI {ref!r} selects no key: give object=LABEL and/or id=%XX")
    module_path = unquote(query_attrs.get("module-path", "")) or environ.get(MODULE_ENV_VAR, "")
    if not module_path:
        raise UsageError(
            f"PKCS#11 URI {ref!r} needs module-path=PATH (or {MODULE_ENV_VAR} in the environment)"
        )
    pin_source = unquote(query_attrs.get("pin-source", ""))
    if not pin_source:
        raise UsageError(f"PKCS#11 URI {ref!r} needs pin-source=env:VAR or pin-source=file:PATH")
    return Pkcs11Ref(
        module_path=module_path,
        token=unquote(path_attrs["token"]) if "token" in path_attrs else None,
        serial=unquote(path_attrs["serial"]) if "serial" in path_attrs else None,
        object=object_label,
        object_id=object_id,
        pin_source=pin_source,
    )


def resolve_pin(pin_source: str, *, environ: Mapping[str, str]) -> str:
    """The PIN named by ``pin-source`` (``env:VAR`` or ``file:PATH``); never from the URI itself."""
    kind, _, target = pin_source.partition(":")
    if kind == "env":
        value = environ.get(target)
        if value is None:
            raise UsageError(f"PKCS#11 PIN variable {target} is not set", details={"variable": target})
        return value
    if kind == "file":
        path = Path(target[2:] if target.startswith("//") else target)
        try:
            return read_user_file(path, "PKCS#11 PIN file").decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise UsageError(f"PKCS#11 PIN file {path} is not UTF-8 text") from exc
    raise UsageError(f"PKCS#11 pin-source {pin_source!r} must be env:VAR or file:PATH")


def open_session(ref: Pkcs11Ref, pin: str) -> Any:
    """A logged-in session on the token ``ref`` names (a context manager), with clear errors."""
    import pkcs11
    from pkcs11.exceptions import (
        MultipleTokensReturned,
        NoSuchToken,
        PinIncorrect,
        PinLenRange,
    )

    if not Path(ref.module_path).is_file():
        raise NotFoundError(f"PKCS#11 module {ref.module_path} does not exist")
    # python-pkcs11 caches one handle per module path, so C_Initialize runs once per process.
    lib = pkcs11.lib(ref.module_path)
    try:
        token = lib.get_token(token_label=ref.token, token_serial=ref.serial.encode() if ref.serial else None)
    except NoSuchToken as exc:
        raise NotFoundError(f"no PKCS#11 token labelled {ref.token!r}", details={"token": ref.token}) from exc
    except MultipleTokensReturned as exc:
        raise UsageError("several PKCS#11 tokens match; add token=LABEL or serial=S") from exc
    try:
        return token.open(user_pin=pin)
    except (PinIncorrect, PinLenRange) as exc:
        raise UsageError(f"PKCS#11 PIN rejected by token {ref.token!r}") from exc
