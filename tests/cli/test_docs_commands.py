"""Docs that run: every fenced shell block of README.md and docs/ is executed (tests/docrun.py).

Every ``stella`` command of every shell block, run or not, is also parsed exactly as
``stella`` parses it -- unknown commands, options and Beam options fail here as they would
for a reader. A block that cannot run here says why (``sh no-run`` + a reason the reader
sees); every other shell block runs, document by document, in a scratch folder whose
``STELLA_HOME`` holds the prepared ``acme`` ledger, against the real registry, Trivy,
age, openssl, tar and zstd. The documents' own walk-throughs assert more in
tests/integration/test_signing_docs.py, test_mirror_docs.py and tests/policy/test_policy_docs.py.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from stella.cli import build_parser, parse_command
from tests.conftest import DocRun
from tests.docrun import NO_RUN_REASON, SHELL, Fence, command_argv, command_lines, documents, fences
from tests.support import REPO, require_tool

FENCES = [fence for path in documents() for fence in fences(path)]
DOCUMENTED = [(fence, line) for fence in FENCES if fence.lang in SHELL for line in command_lines(fence)]
RUNNABLE = sorted({fence.doc for fence in FENCES if fence.runs})
TOOLS = ("age", "age-keygen", "openssl", "tar", "zstd", "jq", "curl", "docker-registry", "trivy")


def test_only_the_readme_setup_block_is_left_to_ci() -> None:
    setup = [fence for fence in FENCES if fence.is_setup]
    assert [(fence.doc, fence.line) for fence in setup] == [("README.md", 3)]
    assert (REPO / ".ci" / "run").read_text().strip().endswith('bootstrap.sh" test')


def test_the_docs_show_commands() -> None:
    assert len(DOCUMENTED) > 40, DOCUMENTED
    assert {"README.md", "docs/trivy.md", "docs/api.md", "docs/distribution.md"} <= set(RUNNABLE)


@pytest.mark.parametrize("fence", FENCES, ids=str)
def test_every_fence_says_what_it_is(fence: Fence) -> None:
    """A language on every fence (commands cannot hide in a bare one); a reason on every no-run."""
    assert fence.lang, f"{fence}: a fence needs a language (bash/sh for commands, text or json otherwise)"
    if "no-run" in fence.flags:
        assert fence.lang in SHELL, f"{fence}: only shell blocks run"
        assert NO_RUN_REASON.match(fence.body), f"{fence}: start with '# not run by the tests: <why>'"


@pytest.mark.parametrize(("fence", "line"), DOCUMENTED, ids=[f"{f}: {line[:60]}" for f, line in DOCUMENTED])
def test_every_documented_command_parses(fence: Fence, line: str) -> None:
    parser = build_parser()
    args, command = parse_command(parser, command_argv(line))
    assert hasattr(args, "handler"), f"{fence}: {line!r} names no command"
    assert command, line


@pytest.mark.slow
@pytest.mark.parametrize("doc", RUNNABLE)
def test_every_shell_block_runs(doc: str, doc_run: DocRun) -> None:
    for tool in TOOLS:
        require_tool(tool)
    ran = doc_run(doc)
    assert ran.returncode == 0, f"{doc}\n{ran.stdout[-3000:]}\n{ran.stderr[-4000:]}"
    check = CHECKS.get(doc)
    if check:
        check(ran.stdout)


def _readme(out: str) -> None:
    assert "OK  " in out  # `stella export verify ./out/acme-json-raw-<hash>`
    assert "CVE-" in out  # Trivy, fed our DB through the registry, found something in the SBOM
    assert "history     2 applied exports" in out  # the mirror took the full and the delta
    assert "every digest verified" in out  # the export run through `stella serve`


def _trivy(out: str) -> None:
    # ./image-root's requests 2.19.0 is found vulnerable offline and again with the pulled DB
    assert out.count("CVE-2018-18074") == 2, out[-3000:]


def _distribution(out: str) -> None:
    assert '"ok": true' in out.replace('"ok":true', '"ok": true') and "CVE-" in out


def _api(out: str) -> None:
    assert "succeeded" in out and "verified    2 files match export.json" in out


CHECKS: dict[str, Callable[[str], None]] = {
    "README.md": _readme,
    "docs/trivy.md": _trivy,
    "docs/distribution.md": _distribution,
    "docs/api.md": _api,
}


def test_checks_name_runnable_documents() -> None:
    assert set(CHECKS) <= set(RUNNABLE)
    assert all((REPO / doc).is_file() for doc in CHECKS)
