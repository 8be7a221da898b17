"""The ``--json`` contract (docs/cli.md): one envelope, a schema per command, help for every option.

Every local command runs here with ``--json`` against a small real ledger, and its output
is validated against ``schemas/cli/<command>.schema.json``; the parser tree and the
schema folder must name the same commands.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from stella.cli import build_parser
from stella.cli.output import Output
from tests.cli.conftest import Runner
from tests.support import CLI_SCHEMAS, REPO, cli_schema_name

# Long-running servers print no result object; everything else has a schema.
_NO_RESULT = {"serve", "worker"}


def _leaves(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [(words, parser)]
    found = []
    for name, child in subs[0].choices.items():
        found += _leaves(child, (*words, name))
    return found


LEAVES = _leaves(build_parser())


def test_every_command_has_a_schema_and_every_schema_a_command() -> None:
    commands = {" ".join(words) for words, _ in LEAVES} - _NO_RESULT
    schemas = {p.name for p in CLI_SCHEMAS.glob("*.schema.json")} - {"envelope.schema.json"}
    assert {cli_schema_name(c) for c in commands} == schemas


@pytest.mark.parametrize("words", [w for w, _ in LEAVES], ids=[" ".join(w) for w, _ in LEAVES])
def test_every_option_has_help_text(words: tuple[str, ...]) -> None:
    parser = dict(LEAVES)[words]
    missing = [
        action.option_strings or action.dest
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction) and not (action.help or "").strip()
    ]
    assert not missing, f"stella {' '.join(words)}: options without help: {missing}"


def test_every_command_is_in_docs() -> None:
    text = (REPO / "docs" / "cli.md").read_text()
    for words, _ in LEAVES:
        assert f"stella {' '.join(words)}" in text, " ".join(words)


def test_envelope_refuses_result_fields_that_shadow_it() -> None:
    with pytest.raises(ValueError, match="envelope's keys"):
        Output("x", json=True).result({"command": "y"})


def test_local_commands_print_one_valid_envelope(
    cli: Runner, small_ledger: Path, small_bundle: Path, tmp_path: Path
) -> None:
    ledger = str(small_ledger)
    out = tmp_path / "out"
    runs = [
        ("ledger tenants", "--ledger", ledger),
        ("ledger stats", "--ledger", ledger),
        ("ledger quarantine ls", "--tenant", "acme", "--ledger", ledger),
        ("export profiles",),
        ("export verify", str(small_bundle)),
        ("export run", "--tenant", "acme", "--profile", "json:raw", "--ledger", ledger, "--out", str(out),
         "--selector", "kind=vex", "-q"),
        ("keys generate", "--type", "ed25519", "--out", str(tmp_path / "k")),
        ("keys id", str(tmp_path / "k.pub")),
        ("keys public", str(tmp_path / "k.key"), "--out", str(tmp_path / "k2.pub")),
        ("keys trust-root", str(tmp_path / "k.pub"), "--out", str(tmp_path / "root.json")),
        ("export archive", str(small_bundle), "--out", str(tmp_path / "b.tar.zst")),
    ]  # fmt: skip
    for command, *rest in runs:
        ran = cli(*command.split(), *rest, "--json")
        assert ran.code == 0, (command, ran.stderr)
        envelope = ran.json()
        assert envelope["ok"] is True and envelope["command"] == command
        assert json.loads(ran.stdout) == envelope  # exactly one object, nothing else on stdout
