"""Dask worker preload: a folder only the driver may read, enforced by an audit hook.

``dask worker --preload tests/services/dask_driver_only.py`` with
``STELLA_TEST_DRIVER_ONLY=/some/folder`` makes every ``open`` (and ``os.open``, listing,
stat-free access through the io layer) of a path inside that folder raise
``PermissionError`` in the worker process, as if the folder were on another host. It
needs no privileges (unlike a mount namespace), so it holds wherever the tests run; all
of a pipeline step's file access goes through Python, which the hook sees.
"""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["dask_setup", "forbid"]

_ENV = "STELLA_TEST_DRIVER_ONLY"
_EVENTS = frozenset({"open", "os.listdir", "os.scandir", "shutil.copyfile", "os.rename", "os.remove"})


def forbid(folder: str) -> None:
    """Install the hook for ``folder`` (absolute, symlinks resolved) in this process."""
    root = os.path.realpath(folder)

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event not in _EVENTS or not args or not isinstance(args[0], str | bytes | os.PathLike):
            return
        path = os.fsdecode(args[0])
        if not os.path.isabs(path):
            return  # relative paths are the worker's own cwd, never the driver's folder
        resolved = os.path.realpath(path)
        if resolved == root or resolved.startswith(root + os.sep):
            raise PermissionError(f"{path}: the driver's disk is not reachable from a worker")

    sys.addaudithook(hook)


def dask_setup(worker: object) -> None:
    """Dask's preload entry point."""
    folder = os.environ.get(_ENV)
    if folder:
        forbid(folder)
