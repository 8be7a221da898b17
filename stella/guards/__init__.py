"""Guards for hostile input, shared by every reader, writer and command.

Each guard turns one class of defect into a clear :class:`stella.errors.StellaError`
at the boundary where untrusted bytes or names enter: ids that become path
components (:mod:`.ids`), JSON with duplicate keys or non-finite numbers
(:mod:`.strictjson`), truncated, padded or bomb-sized compressed streams
(:mod:`.streams`) and links or special files where a regular file is expected
(:mod:`.files`). The limits they enforce are documented in docs/errors.md.
"""

from __future__ import annotations

__all__: list[str] = []
