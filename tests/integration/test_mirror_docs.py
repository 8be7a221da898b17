"""docs/mirror.md's full → delta → carry → import → query → re-export walk-through runs as written."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.support import DATA, REPO, VENV_BIN


def test_walkthrough_in_the_docs_runs_verbatim(tmp_path: Path, shared_data: Path) -> None:
    text = (REPO / "docs" / "mirror.md").read_text()
    block = re.search(
        r"<!-- mirror-walkthrough:begin -->\n```bash\n(.*?)```\n<!-- mirror-walkthrough:end -->",
        text,
        re.DOTALL,
    )
    assert block is not None, "docs/mirror.md lost its walk-through block"
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "DATA": str(DATA)}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.group(1)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-4000:]
    assert out.count("applied     acme-mirror-") == 2 and "would apply" in out
    assert "history     2 applied exports" in out
    assert "sbom-mapping-test@sha256:" in out and "pkg:pypi/requests@" in out  # the DuckDB answer
    assert "OK  " in out  # the re-export from the loaded ledger verifies
    # The far side's ledger holds what the mirror holds, with the connected side's provenance.
    assert (tmp_path / "mirror" / "current").is_symlink()
