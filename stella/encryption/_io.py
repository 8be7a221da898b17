"""Plumbing shared by the encryption modes: atomic output files and the optional pyrage import."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from stella.errors import ProfileUnavailableError

__all__ = ["load_pyrage", "publish"]


@contextmanager
def publish(dst: Path) -> Iterator[BinaryIO]:
    """A temp file beside ``dst``, fsynced and renamed over it only if the block succeeds.

    Decryption learns that a stream was truncated only at its end, so plaintext must not
    become visible under its final name before then; encryption gets the same guarantee
    so a crash never leaves half a ciphertext that looks complete.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".part", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_pyrage() -> Any:
    """pyrage is needed only when age is used; say how to get it instead of an ImportError."""
    try:
        import pyrage
    except ImportError as exc:  # pragma: no cover - pyrage is installed wherever tests run
        raise ProfileUnavailableError(
            "age encryption needs the 'pyrage' package (pip install pyrage)"
        ) from exc
    return pyrage
