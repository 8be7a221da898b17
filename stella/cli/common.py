"""Small pieces every command shares: where the ledger is, what time it is, how to print."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

from stella.documents.interface import format_time, normalize_time
from stella.errors import InputError, UsageError
from stella.guards.files import check_folder_arg
from stella.ledger.store import default_ledger_root

__all__ = ["emit_json", "human_bytes", "ingest_time", "ledger_root", "progress_line"]


def ledger_root(value: str | None) -> str:
    return check_folder_arg(value or default_ledger_root(), "--ledger")


def ingest_time(value: str | None) -> str:
    """The ledger's received-at time: explicit flag, else SOURCE_DATE_EPOCH, else now.

    SOURCE_DATE_EPOCH is the reproducible-builds convention; honouring it lets two
    ledgers built from the same files be byte-identical.
    """
    if value:
        try:
            normalized = normalize_time(value, field="--ingested-at")
        except InputError as exc:
            raise UsageError(f"--ingested-at {value!r} is not an RFC 3339 time") from exc
        assert normalized is not None
        return normalized
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        try:
            return format_time(datetime.fromtimestamp(int(epoch), UTC))
        except (ValueError, OverflowError, OSError) as exc:
            raise UsageError(
                f"SOURCE_DATE_EPOCH={epoch!r} is not an integer number of seconds between year 1 and 9999"
            ) from exc
    return format_time(datetime.now(UTC).replace(microsecond=0))


def emit_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def progress_line(text: str) -> None:
    """Progress goes to stderr so stdout stays parseable."""
    if sys.stderr.isatty():
        print(f"\r{text}", end="", file=sys.stderr, flush=True)
    else:
        print(text, file=sys.stderr, flush=True)
