"""The egress rule: no byte leaves unless its destination host is on the allowlist.

The export is offline by default (BRIEF contract 11), so the default allowlist is the
loopback interface's own names -- ``localhost``, ``127.0.0.1`` and ``::1`` -- and every
other destination, a registry, an object store, a token realm or a redirect, must be
named by the operator (``--allow-host`` or ``STELLA_EGRESS_ALLOWLIST``). Entries are
host names, ``host:port``, IP literals or CIDR networks. Other 127/8 addresses are
deliberately *not* implied: they are commonly bound by other local services and
containers, and "loopback" that reaches someone else's listener is egress all the same.

Every target checks each URL it is about to open, and each redirect target, with
:meth:`EgressPolicy.check_url` *before* connecting.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from stella.errors import EgressDeniedError, UsageError

__all__ = [
    "ALLOWLIST_ENV",
    "DEFAULT_ALLOWLIST",
    "EgressPolicy",
    "check_egress",
    "egress_allowlist",
    "is_loopback",
    "policy_from",
]

ALLOWLIST_ENV = "STELLA_EGRESS_ALLOWLIST"
DEFAULT_ALLOWLIST: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
_LOOPBACK_NAMES = frozenset({"localhost"})


def _bare(host: str) -> str:
    name = host.strip().lower().rstrip(".")
    return name[1:-1] if name.startswith("[") and name.endswith("]") else name


def is_loopback(host: str) -> bool:
    """True for ``localhost``, ``127.0.0.0/8`` and ``::1``: traffic that stays on this machine.

    Used for the plain-HTTP rule (no TLS needed to talk to ourselves), not for egress.
    """
    name = _bare(host)
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _matches(entry: str, host: str, port: int | None) -> bool:
    entry = entry.strip().lower()
    if "/" in entry:
        try:
            return ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return False
    if entry.startswith("["):  # [v6] or [v6]:port
        literal, _, rest = entry[1:].partition("]")
        return literal == host and (not rest or rest == f":{port}")
    if entry.count(":") == 1:  # host:port
        name, _, entry_port = entry.partition(":")
        return name == host and entry_port == str(port)
    return _bare(entry) == host  # host, or a bare IPv6 literal


def check_egress(host: str, port: int | None, allowlist: Sequence[str]) -> None:
    """Refuse a destination that is neither a default loopback name nor on ``allowlist``.

    Raises:
        EgressDeniedError: the destination is not allowed; the message names it.
    """
    name = _bare(host)
    entries = (*DEFAULT_ALLOWLIST, *allowlist)
    if any(_matches(entry, name, port) for entry in entries):
        return
    shown = f"[{name}]" if ":" in name else name
    destination = f"{shown}:{port}" if port is not None else shown
    raise EgressDeniedError(
        f"egress to {destination} is not allowed: add it to the egress allowlist "
        f"(--allow-host or ${ALLOWLIST_ENV}) to publish there",
        details={"host": name, "port": port, "allowlist": sorted({*entries})},
    )


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """The allowlist and the plain-HTTP rule, carried by every remote target."""

    allowlist: tuple[str, ...] = ()
    allow_plain_http: bool = False

    def check(self, host: str, port: int | None) -> None:
        check_egress(host, port, self.allowlist)

    def plain_http_ok(self, host: str) -> bool:
        return self.allow_plain_http or is_loopback(host)

    def check_url(self, url: str) -> None:
        """Egress first, then transport: HTTPS, or plain HTTP to loopback / when allowed.

        Raises:
            EgressDeniedError: the host is not allowed.
            UsageError: a scheme other than https (or http where allowed).
        """
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        self.check(host, parts.port)
        if parts.scheme == "https" or (parts.scheme == "http" and self.plain_http_ok(host)):
            return
        raise UsageError(
            "refusing a non-HTTPS URL (plain HTTP is only for loopback or --allow-plain-http)",
            details={"host": host, "scheme": parts.scheme},
        )


def egress_allowlist(extra: Sequence[str], environ: Mapping[str, str]) -> tuple[str, ...]:
    """The allowlist in force: ``$STELLA_EGRESS_ALLOWLIST`` (comma-separated) plus ``extra`` (``--allow-host``)."""
    from_env = [entry.strip() for entry in environ.get(ALLOWLIST_ENV, "").split(",") if entry.strip()]
    return tuple(dict.fromkeys([*from_env, *extra]))


def policy_from(
    flags: Sequence[str], environ: Mapping[str, str], *, allow_plain_http: bool = False
) -> EgressPolicy:
    """The policy of one command: the allowlist in force and its plain-HTTP choice."""
    return EgressPolicy(egress_allowlist(flags, environ), allow_plain_http)
