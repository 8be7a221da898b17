"""Service settings: where state lives, how tokens are checked, the limits.

Everything has a default under ``$STELLA_HOME`` (``~/.stella``), so ``stella serve``
works with no configuration; each setting can come from a flag or a ``STELLA_*``
variable. Bundles live on a filesystem every worker and API process can reach.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stella.errors import UsageError
from stella.ledger.store import default_ledger_root

__all__ = ["ServiceConfig"]


def _home(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("STELLA_HOME") or Path("~/.stella").expanduser())


def _number(environ: Mapping[str, str], name: str, default: float) -> float:
    text = environ.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError as exc:
        raise UsageError(f"{name}={text!r} is not a number", details={"variable": name}) from exc
    if value <= 0:
        raise UsageError(f"{name} must be positive", details={"variable": name})
    return value


@dataclass(frozen=True)
class ServiceConfig:
    home: Path
    store_url: str
    ledger_root: str
    jwks_url: str | None = None
    issuer: str | None = None
    audience: str | None = None
    sign_key: str | None = None
    beam_args: tuple[str, ...] = ()
    staging: str | None = None  # where pipeline steps write (docs/runners.md); None: beside the bundles
    max_active_runs: int = 4
    retry_after: int = 5
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 5.0
    max_attempts: int = 2
    retention_days: float = 30.0
    poll_seconds: float = 0.5
    sse_heartbeat_seconds: float = 15.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The CLI's check, at start-up: a worker must not find out per run that Dataflow
        # or Flink options it was given can never work. Without Beam flags the runner is
        # the local one and there is nothing to check (nor Beam to import, a second of CPU
        # for `stella ledger ingest`, which reads this config to notify schedules).
        if self.beam_args:
            from runners.remote import check_remote_runner

            check_remote_runner(self.beam_args, staging=self.staging, ledger=self.ledger_root)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ServiceConfig:
        env = os.environ if environ is None else environ
        home = _home(env) / "service"
        config = cls(
            home=home,
            store_url=env.get("STELLA_STORE_URL") or f"sqlite:///{home / 'runs.db'}",
            ledger_root=env.get("STELLA_LEDGER") or default_ledger_root(dict(env)),
            jwks_url=env.get("STELLA_JWKS_URL") or None,
            issuer=env.get("STELLA_OIDC_ISSUER") or None,
            audience=env.get("STELLA_OIDC_AUDIENCE") or None,
            sign_key=env.get("STELLA_SERVICE_SIGN_KEY") or None,
            staging=env.get("STELLA_STAGING") or None,
            max_active_runs=int(_number(env, "STELLA_MAX_ACTIVE_RUNS", 4)),
            lease_seconds=_number(env, "STELLA_LEASE_SECONDS", 30.0),
            heartbeat_seconds=_number(env, "STELLA_HEARTBEAT_SECONDS", 5.0),
            retention_days=_number(env, "STELLA_RETENTION_DAYS", 30.0),
        )
        return replace(config, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def token_key(self) -> Path:
        return self.home / "token-signing.key"

    def bundle_dir(self, tenant: str) -> Path:
        """Where a tenant's bundles are published (``<exportId>/`` and ``<exportId>.tar.zst``)."""
        return self.home / "bundles" / tenant
