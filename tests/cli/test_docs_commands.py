"""Docs that run: every ``stella`` command in a fenced block of README.md and docs/ is real.

Each documented command line (continuations joined, comments dropped, ``<placeholders>``
filled) is parsed exactly as ``stella`` parses it -- unknown commands, options and Beam
options fail here as they would for a reader. README's "Using it" block is also executed,
with its paths pointed at a scratch folder and ``<hash>`` filled from the export it ran.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from stella.cli import build_parser, parse_command
from tests.support import REPO, VENV_BIN, require

_FENCE = re.compile(r"^```(?:bash|sh|shell|console)?\n(.*?)^```", re.DOTALL | re.MULTILINE)
_PLACEHOLDER = re.compile(r"<[^<>]+>")


def _documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _command_lines(text: str) -> list[str]:
    """``stella …`` lines of fenced blocks, continuations joined, trailing comments dropped."""
    found = []
    for block in _FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            for part in re.split(r"\s(?:&&|\|\||;)\s", line):
                part = part.strip()
                if part.startswith(("stella ", ".venv/bin/stella ")) and " [" not in part:  # not a synopsis
                    found.append(re.sub(r"\s+#.*$", "", part))
    return found


def _fill(line: str) -> list[str]:
    """argv as the shell would pass it: placeholders and ``$VARS`` filled, redirections dropped."""
    line = _PLACEHOLDER.sub("x", line).replace("age1...", "age1x").replace("…", "x")
    line = re.split(r"\s(?:\d?>|\|)\s?", line, maxsplit=1)[0]  # `> file`, `2>/dev/null`, `| jq`
    words = shlex.split(line, comments=True)
    return ["x" if w.startswith("$") else w for w in words[1:]]


DOCUMENTED = [(path.name, line) for path in _documents() for line in _command_lines(path.read_text())]


def test_the_docs_show_commands() -> None:
    assert len(DOCUMENTED) > 20, DOCUMENTED


@pytest.mark.parametrize(("doc", "line"), DOCUMENTED, ids=[f"{d}: {line[:60]}" for d, line in DOCUMENTED])
def test_every_documented_command_parses(doc: str, line: str) -> None:
    parser = build_parser()
    args, command = parse_command(parser, _fill(line))
    assert hasattr(args, "handler"), f"{doc}: {line!r} names no command"
    assert command, line


def test_readme_using_it_runs(tmp_path: Path) -> None:
    data = REPO.parent / "shared" / "data"
    require(data.is_dir(), f"shared data at {data}")
    text = (REPO / "README.md").read_text()
    block = text.split("## Using it", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    script = block.replace("./out", str(tmp_path / "out")).replace("../shared/data", str(data))
    lines = [line for line in script.splitlines() if line.strip()]
    env = {k: v for k, v in os.environ.items() if not k.startswith("STELLA_")}
    env["PATH"] = (
        f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"  # every `stella` line, as with the venv activated
    )
    env["STELLA_HOME"] = str(tmp_path / "home")
    for line in lines[:2]:
        ran = subprocess.run(line, shell=True, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert ran.returncode == 0, line + "\n" + ran.stderr
    (bundle,) = (tmp_path / "out").iterdir()
    verify = lines[2].replace("acme-json-raw-<hash>", bundle.name)
    ran = subprocess.run(verify, shell=True, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0 and ran.stdout.startswith("OK"), verify + "\n" + ran.stdout + ran.stderr
