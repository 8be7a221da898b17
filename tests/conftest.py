"""Fixtures shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import DATA, require


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public advisories, SBOMs and VEX in ../shared/data (read in place, never copied)."""
    require(DATA.is_dir(), f"shared data folder {DATA}")
    return DATA
