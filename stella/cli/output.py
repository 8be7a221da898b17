"""One output contract for every command: the ``--json`` envelope.

Every command prints exactly one JSON object on stdout with ``--json``, on success and on
failure alike, so a script reads one shape (docs/cli.md, JSON Schemas in ``schemas/cli/``)::

    {"ok": true,  "command": "export verify", ...the command's fields...}
    {"ok": false, "command": "export verify", "error": {code, message, details, traceId, timestamp},
     ...whatever the command established before failing (verify's report)...}

The command's fields sit at top level in both cases (never a bare array: lists are named
fields), so a failed verify carries its report exactly where a passing one does.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

__all__ = ["RESERVED", "Output"]

RESERVED = ("ok", "command", "error")


@dataclass
class Output:
    """Where a command's result goes: the JSON envelope with ``--json``, else the command prints text."""

    command: str
    json: bool = False
    quiet: bool = False
    verbose: bool = False
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    before_result: Callable[[], None] | None = None
    _partial: dict[str, Any] = field(default_factory=dict)
    _done: bool = False

    def result(self, fields: Mapping[str, Any]) -> None:
        """Print the success envelope (with ``--json``; text output is the command's own, after this)."""
        self._settle()
        if self.json:
            self._emit({"ok": True, "command": self.command, **_fields(fields, ok=True)})

    def keep(self, fields: Mapping[str, Any]) -> None:
        """Fields a failure envelope carries too (e.g. verify's report before it raises)."""
        self._settle()
        self._partial.update(_fields(fields, ok=False))

    def failure(self, error: Mapping[str, Any]) -> None:
        """Print the failure envelope once (the one catch site in :func:`stella.cli.main` calls this)."""
        if self.json and not self._done:
            self._emit({**self._partial, "ok": False, "command": self.command, "error": dict(error)})

    def _settle(self) -> None:
        """Live progress stops before results print, so the two never interleave."""
        if self.before_result is not None:
            self.before_result()

    def _emit(self, envelope: Mapping[str, Any]) -> None:
        self._done = True
        print(json.dumps(envelope, indent=2, sort_keys=True, default=str), file=self.stream, flush=True)


def _fields(fields: Mapping[str, Any], *, ok: bool) -> dict[str, Any]:
    """A command's fields; an ``ok`` of its own must agree with the envelope's (verify's report)."""
    clash = [key for key in RESERVED if key in fields and not (key == "ok" and fields[key] is ok)]
    if clash:
        raise ValueError(f"result fields may not use the envelope's keys: {clash}")
    return {key: value for key, value in fields.items() if key != "ok"}
