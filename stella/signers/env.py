"""Keys passed in an environment variable: ``env://VAR[?password-env=VAR]``.

CI systems hand secrets to jobs as variables, not files; writing them to disk first
would leave a key on a shared runner. The variable holds the PEM text itself, or its
base64 (many secret stores mangle newlines, so base64 is the portable spelling). The
environment is injected, never read from ``os.environ`` here.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping

from stella.errors import NotFoundError, UsageError
from stella.signers.pem import PrivateKeySigner, password_from_env, signer_from_pem, split_ref_options

__all__ = ["load_env_signer", "pem_from_env_value"]

_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def pem_from_env_value(value: str, *, variable: str) -> bytes:
    """PEM bytes from a variable's text: PEM as is, otherwise base64-encoded PEM.

    Raises:
        UsageError: neither PEM nor base64 of PEM.
    """
    text = value.strip()
    if text.startswith("-----BEGIN "):
        return text.encode("utf-8") + b"\n"
    try:
        decoded = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if decoded.lstrip().startswith(b"-----BEGIN "):
        return decoded
    raise UsageError(
        f"environment variable {variable} holds neither a PEM key nor base64 of one",
        details={"variable": variable},
    )


def load_env_signer(ref: str, *, environ: Mapping[str, str]) -> PrivateKeySigner:
    """Open the key named by ``env://VAR``.

    Raises:
        NotFoundError: the variable is not set.
        UsageError: bad variable name, bad contents, wrong or missing password.
    """
    variable, options = split_ref_options(ref[len("env://") :], allowed=frozenset({"password-env"}), ref=ref)
    if not _VAR_NAME.fullmatch(variable):
        raise UsageError(f"key reference {ref!r}: {variable!r} is not an environment variable name")
    value = environ.get(variable)
    if value is None:
        raise NotFoundError(
            f"environment variable {variable} (named by key reference) is not set",
            details={"variable": variable},
        )
    source = f"env://{variable}"
    password = password_from_env(options.get("password-env"), environ=environ, source=source)
    return signer_from_pem(
        pem_from_env_value(value, variable=variable), password=password, source=source, environ=environ
    )
