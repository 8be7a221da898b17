"""Shared test helpers: where the shared data lies and how real components are required.

CI sets ``CI=true``; there a missing real component (Trivy, boltchk, age, SoftHSM2, the
registry, the GCS emulator) is a failure, not a skip, because a skipped peer check
proves nothing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STELLA_SHARED", REPO.parent / "shared")).resolve()
DATA = SHARED / "data"
TOOLS = SHARED / "tools"
CACHE = Path(os.environ.get("STELLA_TEST_CACHE", REPO / ".cache")).resolve()
VENV_BIN = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(condition: bool, what: str) -> None:
    """Skip locally, fail in CI, when a real component the test needs is missing."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"required component missing in CI: {what}")
    pytest.skip(f"component missing: {what}")


def require_tool(name: str) -> str:
    """Path of an executable on PATH or in the venv, or skip/fail per :func:`require`."""
    found = shutil.which(name) or (str(VENV_BIN / name) if (VENV_BIN / name).exists() else None)
    require(found is not None, f"executable {name!r}")
    assert found is not None
    return found
