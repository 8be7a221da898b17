"""Plumbing shared by the encryption modes: atomic output files and the optional pyrage import."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, BinaryIO

from stella.errors import ProfileUnavailableError
from stella.storage import atomic_local

__all__ = ["load_pyrage", "publish"]


def publish(dst: Path) -> AbstractContextManager[BinaryIO]:
    """Encrypted and decrypted files appear complete or not at all.

    Decryption learns that a stream was truncated only at its end, so plaintext must not
    become visible under its final name before then; encryption gets the same guarantee
    so a crash never leaves half a ciphertext that looks complete.
    """
    return atomic_local(dst)


def load_pyrage() -> Any:
    """pyrage is needed only when age is used; say how to get it instead of an ImportError."""
    try:
        import pyrage
    except ImportError as exc:  # pragma: no cover - pyrage is installed wherever tests run
        raise ProfileUnavailableError(
            "age encryption needs the 'pyrage' package (pip install pyrage)"
        ) from exc
    return pyrage
