"""docs/signing.md's sign → transfer → verify → decrypt round trip runs as written."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.support import REPO, VENV_BIN, require_tool


def test_round_trip_in_the_docs_runs_verbatim(tmp_path: Path) -> None:
    for tool in ("age", "age-keygen", "openssl", "zstd", "tar"):
        require_tool(tool)
    text = (REPO / "docs" / "signing.md").read_text()
    block = re.search(
        r"<!-- round-trip:begin -->\n```bash\n(.*?)```\n<!-- round-trip:end -->", text, re.DOTALL
    )
    assert block is not None, "docs/signing.md lost its round-trip block"
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.group(1)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "Verified OK" in result.stdout
    assert result.stdout.count("OK  ") >= 2, result.stdout  # the archive and the decrypted folder verified
    assert int(result.stdout.strip().splitlines()[-1]) > 0  # advisories decrypted by age itself
