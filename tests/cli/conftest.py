"""Fixtures for the CLI tests: the CLI run in-process (fast), and a small real ledger."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stella.cli import main
from tests.support import DATA, T0, check_cli_json


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        return check_cli_json(self.stdout)


Runner = Callable[..., Ran]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Runner:
    """``cli("export", "run", ...)`` -> exit code and output, with a private STELLA_HOME."""
    monkeypatch.setenv("STELLA_HOME", str(tmp_path / "home"))
    for name in ("STELLA_TENANT", "STELLA_LEDGER"):
        monkeypatch.delenv(name, raising=False)

    def run(*argv: str) -> Ran:
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return run


@pytest.fixture(scope="session")
def small_ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tenant ``acme``: the GHSA sample advisories and the OpenVEX documents (real data, seconds to build)."""
    root = tmp_path_factory.mktemp("cli-ledger") / "ledger"
    code = main(
        [
            "ledger", "ingest", "--tenant", "acme", "--ledger", str(root), "--ingested-at", T0, "-q",
            str(DATA / "advisories" / "osv-ghsa-sample.jsonl.zst"), str(DATA / "vex" / "openvex"),
        ]
    )  # fmt: skip
    assert code == 0
    return root


@pytest.fixture(scope="session")
def small_bundle(small_ledger: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli-out")
    code = main(
        ["export", "run", "--tenant", "acme", "--profile", "json:raw", "--ledger", str(small_ledger),
         "--out", str(out), "-q"]
    )  # fmt: skip
    assert code == 0
    (bundle,) = [p for p in out.iterdir() if p.is_dir()]
    return bundle
