"""Small pieces every command shares: defaults (flag, environment, config file), time, output.

Defaults resolve in one order for every command: the flag, then the environment
(``STELLA_TENANT``, ``STELLA_LEDGER``), then ``$STELLA_HOME/config.toml`` (keys ``tenant``
and ``ledger``), then the built-in default. A missing tenant is a usage error naming all
three ways to give one.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from stella.cli.progress import human_bytes, plural
from stella.documents.interface import format_time, normalize_time
from stella.errors import InputError, NotFoundError, UsageError
from stella.guards.files import check_folder_arg
from stella.ledger.store import default_ledger_root
from stella.model import validate_tenant

__all__ = [
    "CONFIG_KEYS",
    "Settings",
    "human_bytes",
    "ingest_time",
    "ledger_root",
    "load_settings",
    "plural",
    "recipients_from_args",
    "tenant_of",
]

CONFIG_KEYS = ("tenant", "ledger")
TENANT_HELP = "tenant (default $STELLA_TENANT, then config.toml)"
LEDGER_HELP = "ledger folder or gs:// URL (default $STELLA_LEDGER, config.toml, else $STELLA_HOME/ledger)"


@dataclass(frozen=True)
class Settings:
    """Defaults from the environment and ``$STELLA_HOME/config.toml``."""

    tenant: str | None = None
    ledger: str | None = None
    source: str | None = None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the optional config file, then let the environment override it.

    Raises:
        UsageError: the config file is not TOML or has keys this version does not know.
    """
    env = os.environ if environ is None else environ
    home = Path(env.get("STELLA_HOME") or Path("~/.stella").expanduser())
    path = home / "config.toml"
    values: dict[str, object] = {}
    if path.is_file():
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"{path}: not valid TOML: {exc}", details={"path": str(path)}) from exc
        unknown = sorted(set(values) - set(CONFIG_KEYS))
        if unknown:
            raise UsageError(
                f"{path}: unknown setting {unknown[0]!r} (known: {', '.join(CONFIG_KEYS)})",
                details={"path": str(path), "unknown": unknown},
            )
        if any(not isinstance(v, str) for v in values.values()):
            raise UsageError(f"{path}: settings are strings", details={"path": str(path)})
    return Settings(
        tenant=env.get("STELLA_TENANT") or _str(values.get("tenant")),
        ledger=env.get("STELLA_LEDGER") or _str(values.get("ledger")),
        source=str(path) if values else None,
    )


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def ledger_root(value: str | None, environ: Mapping[str, str] | None = None) -> str:
    chosen = value or load_settings(environ).ledger or default_ledger_root(dict(environ or os.environ))
    return check_folder_arg(chosen, "--ledger")


def tenant_of(value: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The tenant to act for: the flag, else ``STELLA_TENANT``, else the config file.

    Raises:
        UsageError: none of them names a tenant, or the name is not a valid tenant id.
    """
    chosen = value or load_settings(environ).tenant
    if not chosen:
        raise UsageError("--tenant is required (or set STELLA_TENANT, or tenant in $STELLA_HOME/config.toml)")
    return validate_tenant(chosen)


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


def recipients_from_args(args: argparse.Namespace) -> list[str]:
    """``--encrypt-to`` values plus every recipient line of the ``-R`` files (age's format).

    Raises:
        NotFoundError: a recipients file does not exist.
        UsageError: a recipients file is not text or lists no recipient.
    """
    recipients = list(getattr(args, "encrypt_to", []))
    for name in getattr(args, "encrypt_to_file", []):
        path = Path(name)
        if not path.is_file():
            raise NotFoundError(f"recipients file {path} does not exist", details={"path": str(path)})
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise UsageError(f"recipients file {path} is not text", details={"path": str(path)}) from exc
        found = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not found:
            raise UsageError(f"recipients file {path} lists no recipient", details={"path": str(path)})
        recipients += found
    return recipients
