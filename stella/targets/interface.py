"""The targets port: where a finished bundle goes, and the egress rule every remote target obeys.

A target receives something already built and verified locally (a staged bundle folder
or an OCI image layout) and publishes it; it never builds content. Remote targets are
explicit configuration: the export is offline by default, so a destination host must be
on the operator's allowlist (loopback excepted, which never leaves the machine).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from stella.errors import EgressDeniedError

__all__ = ["ALLOWLIST_ENV", "PublishResult", "Target", "check_egress", "egress_allowlist", "is_loopback"]

# The operator's standing egress allowlist: comma-separated ``host`` or ``host:port`` entries.
ALLOWLIST_ENV = "STELLA_EGRESS_ALLOWLIST"

_LOOPBACK_NAMES = frozenset({"localhost"})


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Where the content landed and the digest that names it there."""

    location: str
    digest: str


@runtime_checkable
class Target(Protocol):
    """Publishes locally staged content to one destination."""

    def check(self) -> None:
        """Refuse, without connecting, a destination this target may not reach (egress, syntax).

        Called before the content is even read, so a refusal costs nothing.
        """
        ...

    def publish(self, source: Path) -> PublishResult:
        """Publish ``source``; raise a :class:`stella.errors.StellaError` on refusal or failure."""
        ...


def is_loopback(host: str) -> bool:
    """True for ``localhost``, ``127.0.0.0/8`` and ``::1`` (brackets allowed): traffic that stays on this machine."""
    name = host.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_egress(host: str, port: int | None, allowlist: Sequence[str]) -> None:
    """Refuse a destination that is neither loopback nor on the allowlist, before any connection.

    Allowlist entries are ``host`` (any port) or ``host:port``, compared case-insensitively;
    IPv6 literals are written in brackets (``[2001:db8::1]:5000``).

    Raises:
        EgressDeniedError: the destination is not allowed; the message names it.
    """
    if is_loopback(host):
        return
    name = host.strip().lower()
    bare = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    shown = f"[{bare}]" if ":" in bare else bare
    candidates = {shown, bare}
    if port is not None:
        candidates |= {f"{shown}:{port}"}
    allowed = {entry.strip().lower() for entry in allowlist}
    if candidates & allowed:
        return
    destination = f"{shown}:{port}" if port is not None else shown
    raise EgressDeniedError(
        f"egress to {destination} is not allowed: add it to the egress allowlist to publish there",
        details={"host": bare, "port": port, "allowlist": sorted(allowed)},
    )


def egress_allowlist(extra: Sequence[str], environ: Mapping[str, str]) -> tuple[str, ...]:
    """The allowlist in force: ``$STELLA_EGRESS_ALLOWLIST`` plus ``extra`` (e.g. ``--allow-host``)."""
    from_env = [entry.strip() for entry in environ.get(ALLOWLIST_ENV, "").split(",") if entry.strip()]
    return tuple(dict.fromkeys([*from_env, *extra]))
