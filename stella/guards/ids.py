"""One strict pattern for every id that becomes a path component.

An ``exportId`` read from a bundle, a tenant from a request, a mirror name or a run id
is joined into a filesystem path or an object key somewhere. Validating each against
its own ad-hoc pattern (or with ``re.match``, whose ``$`` accepts a trailing newline)
let ``../../x`` and ``acme\\n`` through; one pattern, applied with ``fullmatch`` both
where the id is parsed and again where it is joined, closes that for all of them.
"""

from __future__ import annotations

import re
from typing import Final

from stella.errors import StellaError, UsageError

__all__ = ["ID_MAX_LENGTH", "ID_PATTERN", "check_id"]

ID_MAX_LENGTH: Final = 128
# Lowercase letters and digits, with '.', '_' and '-' inside: never empty, never '.'
# or '..', no separator, no whitespace or control character, at most 128 characters
# (well under every filesystem's 255-byte name limit and the OCI tag limit).
ID_PATTERN: Final = re.compile(rf"[a-z0-9](?:[a-z0-9._-]{{0,{ID_MAX_LENGTH - 2}}}[a-z0-9])?")


def check_id(value: object, what: str, *, error: type[StellaError] = UsageError) -> str:
    """Return ``value`` if it is a safe id, else raise ``error`` naming ``what``.

    ``error`` is the class that fits the surface: a usage error for an argument, a
    bundle-integrity error for a field read from a bundle.
    """
    if isinstance(value, str) and ID_PATTERN.fullmatch(value):
        return value
    raise error(
        f"invalid {what} {value!r}: use 1-{ID_MAX_LENGTH} characters of a-z, 0-9, '.', '_' and '-', "
        "starting and ending with a letter or digit",
        details={
            "field": what,
            "value": value if isinstance(value, str) else repr(value),
            "pattern": ID_PATTERN.pattern,
        },
    )
