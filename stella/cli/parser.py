"""The argument parser every ``stella`` command is built with.

Conventions every command inherits by being registered under this parser class:

* no silent guesses: option abbreviations are off (``--sign`` never means ``--sign-key``),
  and an unknown option or command is a usage error (exit 2) naming the closest real one;
* ``--json``, ``-q`` and ``-v`` are accepted on every command, before or after its
  arguments (their defaults are suppressed on sub-parsers so a flag given early is not
  reset by a later level);
* a group without its sub-command prints its help instead of an error.
"""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

from stella.errors import UsageError

__all__ = [
    "CommandParser",
    "command_path",
    "leaf_parser",
    "split_passthrough",
    "suggest",
    "unknown_option_error",
]

_INVALID_CHOICE = re.compile(r"invalid choice: '(?P<value>[^']*)' \(choose from (?P<choices>.*)\)")


def suggest(value: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate to a mistyped ``value``, if one is close enough to be the intent."""
    matches = difflib.get_close_matches(value, sorted(set(candidates)), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_option_error(token: str, candidates: Iterable[str], *, where: str) -> UsageError:
    """``unknown option --x for WHERE; did you mean --y?`` as a usage error."""
    name = token.split("=", 1)[0]
    guess = suggest(name, candidates)
    hint = f"; did you mean {guess}?" if guess else f"; see stella {where} --help"
    kind = "option" if name.startswith("-") else "argument"
    return UsageError(
        f"unknown {kind} {name} for stella {where}{hint}",
        details={"argument": name, **({"suggestion": guess} if guess else {})},
    )


class CommandParser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` (one catch site maps it) and adds the common flags."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("conflict_handler", "resolve")
        super().__init__(*args, **kwargs)
        top = kwargs.get("prog") == "stella"
        default: Any = False if top else argparse.SUPPRESS
        common = self.add_argument_group("output")
        common.add_argument(
            "--json", action="store_true", default=default, help="print one JSON object (docs/cli.md)"
        )
        common.add_argument(
            "-q", "--quiet", action="store_true", default=default, help="no progress on stderr"
        )
        common.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            default=default,
            help="debug logs, Beam's own logging and tracebacks",
        )

    def error(self, message: str) -> NoReturn:
        match = _INVALID_CHOICE.search(message)
        if match:
            choices = re.findall(r"'([^']*)'", match["choices"])
            guess = suggest(match["value"], choices)
            hint = f"did you mean {guess!r}?" if guess else f"choose from {', '.join(choices)}"
            raise UsageError(
                f"{self.prog}: unknown {match['value']!r}; {hint}",
                details={"argument": match["value"], **({"suggestion": guess} if guess else {})},
            )
        raise UsageError(f"{self.prog}: {message}")

    def option_strings(self) -> list[str]:
        return [s for action in self._actions for s in action.option_strings]


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[Any] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def leaf_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The deepest parser ``args`` went through (the one whose options apply)."""
    while (action := _subcommands(parser)) is not None:
        chosen = getattr(args, action.dest, None)
        if chosen is None:
            break
        parser = action.choices[chosen]
    return parser


def command_path(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """``"export run"``: the command words ``args`` selected, for messages and the JSON envelope."""
    words: list[str] = []
    while (action := _subcommands(parser)) is not None:
        chosen = getattr(args, action.dest, None)
        if chosen is None:
            break
        words.append(chosen)
        parser = action.choices[chosen]
    return " ".join(words)


def split_passthrough(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split at the first ``--``: ours before it, Beam's after it."""
    items = list(argv)
    if "--" in items:
        index = items.index("--")
        return items[:index], items[index + 1 :]
    return items, []
