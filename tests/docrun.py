"""Docs that run: the fenced shell blocks of README.md and docs/*.md, executed as a reader would.

One document is one terminal session: its runnable blocks (info string ``bash``, ``sh`` or
``shell``) are joined, in order, into one ``bash -euo pipefail`` script that runs in a fresh
folder with a private ``STELLA_HOME`` and the venv's ``stella`` and ``trivy`` first on PATH.
The only edits the test makes are *fills*: ``<placeholders>`` and the loopback ports a
document names (``127.0.0.1:5000`` for the registry it starts, ``8470`` for ``stella serve``)
are replaced by values the test chooses, so parallel runs never collide.

A block that cannot run here is fenced ``sh no-run`` and starts with a ``# not run by the
tests: <reason>`` comment the reader sees too; its ``stella`` lines are still parsed. Other
fences (``text``, ``json``) hold no commands. Background services a document starts (a
registry, ``stella serve``) live in the script's own process group, ended when it finishes.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.services import free_port
from tests.support import DATA, REPO, SHARED, VENV_BIN

__all__ = [
    "NO_RUN_REASON",
    "SHELL",
    "Fence",
    "command_argv",
    "PLACEHOLDERS",
    "command_lines",
    "documents",
    "fences",
    "fills",
    "needs_registry",
    "run_document",
    "script",
]

SHELL = frozenset({"bash", "sh", "shell"})
NO_RUN_REASON = re.compile(r"^# not run by the tests: \S.{10,}")
_FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```$", re.DOTALL | re.MULTILINE)
_PLACEHOLDER = re.compile(r"<[A-Za-z][^<>\n]*>")


PLACEHOLDERS: Mapping[str, Mapping[str, str]] = {
    "README.md": {
        "<hash>": "*",
        "<id>": "$(basename outbox/acme-json-raw-*.tar.zst .tar.zst)",
        "<fullId>": "$(basename outbox/acme-mirror-full-*.tar.zst .tar.zst)",
        "<deltaId>": "$(basename outbox/acme-mirror-delta-*.tar.zst .tar.zst)",
    },
    "docs/trivy.md": {"<db bundle>": "acme-trivy-db-*", "<java bundle>": "acme-trivy-java-db-*"},
    "docs/distribution.md": {"<hash>": "*"},
}
"""What the test puts for each document's ``<placeholders>``: shell the reader would type."""


@dataclass(frozen=True, slots=True)
class Fence:
    """One fenced block: where it is, its language and flags (``no-run``), its text."""

    doc: str
    line: int
    lang: str
    flags: frozenset[str]
    body: str

    @property
    def runs(self) -> bool:
        return self.lang in SHELL and "no-run" not in self.flags and not self.is_setup

    @property
    def is_setup(self) -> bool:
        """README's first block, kept exactly as it is: ``./bootstrap.sh`` sets up the machine, and CI
        runs it itself (``.ci/run`` is ``bootstrap.sh test``, which runs these tests)."""
        lines = [line for line in self.body.splitlines() if line.strip()]
        return (
            self.doc == "README.md"
            and bool(lines)
            and all(line.startswith("./bootstrap.sh ") for line in lines)
        )

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}"


def documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def fences(path: Path) -> list[Fence]:
    text = path.read_text()
    name = path.relative_to(REPO).as_posix()
    found = []
    for match in _FENCE.finditer(text):
        lang, *flags = match.group(1).split()
        line = text.count("\n", 0, match.start()) + 1
        found.append(Fence(name, line, lang if match.group(1) else "", frozenset(flags), match.group(2)))
    return found


def command_lines(fence: Fence) -> list[str]:
    """``stella …`` commands of a block: continuations joined, ``$ `` prompts and comments dropped."""
    found = []
    for line in fence.body.replace("\\\n", " ").splitlines():
        line = line.strip().removeprefix("$ ")
        line, substituted = re.subn(r"^(?:export )?\w+=\$\(", "", line)  # `x=$(stella …)`
        for part in re.split(r"\s(?:&&|\|\||;|\|)\s", line):
            part = re.sub(r"\s+#.*$", "", part.strip())
            if part.startswith("stella "):
                found.append(part.removesuffix(")") if substituted else part)
    return found


def command_argv(line: str) -> list[str]:
    """argv as the shell would pass it: placeholders and ``$VARS`` filled, redirections dropped."""
    line = _PLACEHOLDER.sub("x", line).replace("…", "x")
    line = re.split(r"\s(?:\d?>|\||<)\s?", line, maxsplit=1)[0]
    words = shlex.split(line, comments=True)
    return ["x" if "$" in word else word for word in words[1:]]


def script(path: Path, fills: Mapping[str, str]) -> str:
    """The document's runnable blocks as one script, every fill applied; no placeholder left."""
    blocks = [fence for fence in fences(path) if fence.runs]
    text = "\n".join(f"# --- {fence}\n{fence.body}" for fence in blocks)
    for old, new in fills.items():
        text = text.replace(old, new)
    left = sorted(set(_PLACEHOLDER.findall(text)))
    if left:
        raise AssertionError(f"{path.name}: placeholders the test does not fill: {left}")
    return text


def needs_registry(path: Path) -> bool:
    """The document pushes to ``127.0.0.1:5000`` without starting a registry itself (it links trivy.md)."""
    text = "\n".join(fence.body for fence in fences(path) if fence.runs)
    return "127.0.0.1:5000" in text and "docker-registry serve" not in text


def fills(doc: str, registry: str | None = None) -> dict[str, str]:
    """The document's placeholders, loopback addresses for what it starts (or the test's ``registry``), data paths."""
    return {
        **PLACEHOLDERS.get(doc, {}),
        "127.0.0.1:5000": registry or f"127.0.0.1:{free_port()}",
        "8470": str(free_port()),
        "../shared/data": str(DATA),
        ".venv/bin/": f"{VENV_BIN}/",
    }


@contextlib.contextmanager
def _session_group(process: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """End whatever the script left running in the background (its own process group)."""
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)


def run_document(
    path: Path, workdir: Path, *, fills: Mapping[str, str], env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``path``'s blocks in ``workdir`` (``STELLA_HOME=workdir/home``); return what happened."""
    workdir.mkdir(parents=True, exist_ok=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("STELLA_", "TRIVY_", "REGISTRY_"))}
    full_env = {
        **base,
        "PATH": f"{VENV_BIN}{os.pathsep}{base.get('PATH', '')}",
        "STELLA_HOME": str(workdir / "home"),
        "HOME": str(workdir),  # trivy's cache, argcomplete: nothing outside the folder
        "SHARED": str(SHARED),
        "DATA": str(DATA),
        "NO_COLOR": "1",
        **(env or {}),
    }
    source = script(path, fills)
    process = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", source],
        cwd=workdir,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    with _session_group(process):
        try:
            out, err = process.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)
