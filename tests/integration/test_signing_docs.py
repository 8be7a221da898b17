"""docs/signing.md's sign → transfer → verify → decrypt round trip runs as written (tests/docrun.py)."""

from __future__ import annotations

import re

from tests.conftest import DocRun
from tests.support import require_tool


def test_round_trip_in_the_docs_runs_verbatim(doc_run: DocRun) -> None:
    for tool in ("age", "age-keygen", "openssl", "zstd", "tar"):
        require_tool(tool)
    result = doc_run("docs/signing.md")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    out = result.stdout
    assert "Verified OK" in out  # openssl, with no Stella code, checked the signature
    assert out.count("OK  ") >= 2, out  # the archive and the decrypted folder verified
    counted = re.search(r"^\s*(\d+)\s*$", out.split("Verified OK", 1)[1], re.MULTILINE)
    assert counted and int(counted.group(1)) > 0  # advisories decrypted by age itself
    assert "sign with --sign-key file://ci.key?password-env=KEY_PW" in out  # the key-making block ran too
