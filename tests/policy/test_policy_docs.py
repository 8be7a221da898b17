"""docs/policy.md's publish -> export -> jq -> DuckDB walkthrough runs as written (tests/docrun.py)."""

from __future__ import annotations

import pytest

from tests.conftest import DocRun
from tests.support import require_tool


@pytest.mark.slow
def test_walkthrough_runs_verbatim(doc_run: DocRun) -> None:
    for tool in ("jq", "zstd"):
        require_tool(tool)
    result = doc_run("docs/policy.md")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    out = result.stdout
    assert "ci-gate" in out and "OK  " in out
    assert '"verdicts":{"fail":' in out
    fails = [line for line in out.splitlines() if line.startswith('{"purl":')]
    assert fails and all('"rule":"' in line for line in fails)
    assert "vex_status" in out and "findings" in out  # DuckDB printed its table
