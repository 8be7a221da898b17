"""Helpers for the hostile-input suite: run the CLI, measure a child's peak RSS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stella.cli import main
from stella.errors import EXIT_CODES
from tests.support import DATA, REPO, VENV_BIN, require

# What a command may exit with: success, the documented codes (docs/errors.md, which a test
# keeps equal to stella.errors), Ctrl-C; never 1, "a bug".
DOCUMENTED_EXITS = frozenset({0, 130, *(spec.exit_code for spec in EXIT_CODES.values())}) - {1}

_RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "sys.stderr.write(done.stderr)\n"
    "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str
    peak_rss_mb: float = 0.0

    @property
    def payload(self) -> Any:
        return json.loads(self.stdout)


def stella(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    """The CLI in-process (fast), with its exit code and output."""
    code = main(list(args))
    out = capsys.readouterr()
    return Run(code, out.out, out.err)


def stella_measured(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Run:
    """The CLI in a child process, with the child's peak RSS (``ru_maxrss`` of its own wrapper)."""
    command = [sys.executable, "-c", _RSS_WRAPPER, str(VENV_BIN / "stella"), *args]
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    done = subprocess.run(
        command, capture_output=True, text=True, env=environment, timeout=timeout, check=True
    )
    code, rss_kb = done.stdout.split()[-2:]
    return Run(int(code), "", done.stderr, int(rss_kb) / 1024)


@pytest.fixture(scope="session")
def go_vulndb() -> Path:
    path = DATA / "advisories" / "osv-go-vulndb.jsonl.zst"
    require(path.is_file(), f"shared data file {path}")
    return path


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STELLA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    return tmp_path / "home"
