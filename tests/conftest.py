"""Fixtures shared by every test folder."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import DATA, require

DocRun = Callable[[str], subprocess.CompletedProcess[str]]
"""``doc_run("docs/x.md")`` -> how the document's shell blocks ran (tests/docrun.py)."""


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public advisories, SBOMs and VEX in ../shared/data (read in place, never copied)."""
    require(DATA.is_dir(), f"shared data folder {DATA}")
    return DATA


@pytest.fixture(scope="session")
def prepared_ledger(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """Tenant ``acme`` with every shared advisory, SBOM and VEX document: the ledger docs assume.

    Built once per session; tests copy it (``shutil.copytree``) before writing to it.
    """
    from stella.cli import main
    from tests.support import T0, preserved_logging

    root = tmp_path_factory.mktemp("prepared") / "ledger"
    sources = [str(shared_data / kind) for kind in ("advisories", "sboms", "vex")]
    with preserved_logging():
        code = main(
            [
                "ledger",
                "ingest",
                "--tenant",
                "acme",
                "--ledger",
                str(root),
                "--ingested-at",
                T0,
                "-q",
                *sources,
            ]
        )
    assert code == 0
    return root


@pytest.fixture(scope="session")
def doc_run(tmp_path_factory: pytest.TempPathFactory, prepared_ledger: Path) -> DocRun:
    """``doc_run("docs/mirror.md")``: the document's blocks run once per session (tests/docrun.py)."""
    from tests.docrun import fills, needs_registry, run_document
    from tests.services.registry import run_registry
    from tests.support import REPO, require_tool

    done: dict[str, subprocess.CompletedProcess[str]] = {}

    def run(doc: str) -> subprocess.CompletedProcess[str]:
        if doc not in done:
            workdir = tmp_path_factory.mktemp("doc-" + Path(doc).stem)
            shutil.copytree(prepared_ledger, workdir / "home" / "ledger")
            with contextlib.ExitStack() as stack:
                registry = None
                if needs_registry(REPO / doc):
                    binary = require_tool("docker-registry")
                    registry = stack.enter_context(run_registry(binary, workdir / "registry")).address
                done[doc] = run_document(REPO / doc, workdir, fills=fills(doc, registry))
        return done[doc]

    return run
