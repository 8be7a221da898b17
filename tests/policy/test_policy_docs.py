"""docs/policy.md's publish -> export -> jq -> DuckDB walkthrough runs as written."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.support import REPO, SHARED, VENV_BIN, require, require_tool


@pytest.mark.slow
def test_walkthrough_runs_verbatim(tmp_path: Path, shared_data: Path) -> None:
    for tool in ("jq", "zstd"):
        require_tool(tool)
    text = (REPO / "docs" / "policy.md").read_text()
    block = re.search(
        r"<!-- walkthrough:begin -->\n```bash\n(.*?)```\n<!-- walkthrough:end -->", text, re.DOTALL
    )
    require(block is not None, "docs/policy.md walkthrough block")
    assert block is not None
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "SHARED": str(SHARED)}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.group(1)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    out = result.stdout
    assert "ci-gate" in out and "OK  " in out
    assert '"verdicts":{"fail":' in out
    fails = [line for line in out.splitlines() if line.startswith('{"purl":')]
    assert fails and all('"rule":"' in line for line in fails)
    assert "vex_status" in out and "findings" in out  # DuckDB printed its table
