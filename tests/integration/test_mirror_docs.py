"""docs/mirror.md's full → delta → carry → import → query → re-export walk-through runs as written."""

from __future__ import annotations

from tests.conftest import DocRun


def test_walkthrough_in_the_docs_runs_verbatim(doc_run: DocRun) -> None:
    result = doc_run("docs/mirror.md")
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-4000:]
    assert out.count("applied     acme-mirror-") == 2 and "would apply" in out
    assert "history     2 applied exports" in out
    assert "sbom-mapping-test@sha256:" in out and "pkg:pypi/requests@" in out  # the DuckDB answer
    assert "OK  " in out  # the re-export from the loaded ledger verifies
