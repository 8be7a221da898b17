"""What a schedule is: a named export launch (tenant, profile, selectors, targets) and its trigger.

Schedules are untrusted input from three surfaces (CLI flags, API bodies, a store row),
so each one is parsed into these frozen objects once, at the boundary, with errors that
name the field. Times are aware UTC datetimes everywhere past the boundary; a cron
trigger carries its own IANA time zone because "02:00 every night" means different
instants in Paris and in UTC, and DST is the cron library's job, not ours.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from stella.errors import UsageError
from stella.model import Kind, validate_tenant

__all__ = [
    "EVENT_SOURCES",
    "CatchUp",
    "CronTrigger",
    "EventTrigger",
    "OnceTrigger",
    "Schedule",
    "Trigger",
    "format_time",
    "parse_event",
    "parse_time",
    "sign_choice",
    "trigger_from_json",
    "validate_name",
]

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
# ``ingest:<kind>`` fires on ledger ingests of that kind (``ingest:any`` on all of them);
# ``webhook`` fires on POST /api/export/triggers/{name}.
EVENT_SOURCES = ("ingest", "webhook")


class CatchUp(enum.StrEnum):
    """What happens to slots missed while no scheduler ran (docs/schedules.md)."""

    ONCE = "once"  # run once for the newest missed slot, however many were missed
    SKIP = "skip"  # run nothing late; wait for the next slot


def validate_name(name: str) -> str:
    """A schedule name becomes part of URLs and slot keys: the tenant's slug rule applies."""
    if not _NAME.match(name or ""):
        raise UsageError(
            f"invalid schedule name {name!r}: use 2-63 characters of a-z, 0-9 and '-'",
            details={"name": name, "pattern": _NAME.pattern},
        )
    return name


def parse_time(value: str, what: str) -> datetime:
    """An RFC 3339 time with an explicit offset, as aware UTC; a naive time is ambiguous, so refused."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(f"{what} {value!r} is not an RFC 3339 time", details={what: value}) from exc
    if moment.tzinfo is None:
        raise UsageError(f"{what} {value!r} needs a time zone offset (e.g. Z)", details={what: value})
    return moment.astimezone(UTC)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UsageError(f"unknown time zone {name!r} (an IANA name such as UTC or Europe/Paris)") from exc


@dataclass(frozen=True, slots=True)
class CronTrigger:
    """Slots from a five-field cron expression read in ``timezone``."""

    expression: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        _zone(self.timezone)
        if len(self.expression.split()) != 5 or not croniter.is_valid(self.expression):
            raise UsageError(
                f"invalid cron expression {self.expression!r} (five fields: minute hour day month weekday)",
                details={"cron": self.expression},
            )

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.timezone)

    def to_json(self) -> dict[str, Any]:
        return {"type": "cron", "cron": self.expression, "timezone": self.timezone}


@dataclass(frozen=True, slots=True)
class OnceTrigger:
    """One slot at an instant."""

    at: datetime

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise UsageError("a one-off time needs a time zone")

    def to_json(self) -> dict[str, Any]:
        return {"type": "once", "at": format_time(self.at)}


@dataclass(frozen=True, slots=True)
class EventTrigger:
    """Fires after a burst of events has been quiet for ``quiet_seconds`` (or ``max_delay_seconds`` passed).

    Coalescing is the point: 50 advisory ingests in a minute are one change to the
    evidence, and one export of it, not 50.
    """

    source: str
    kind: str | None = None
    quiet_seconds: int = 30
    max_delay_seconds: int = 300

    def __post_init__(self) -> None:
        if self.source not in EVENT_SOURCES:
            raise UsageError(f"unknown event source {self.source!r}: one of {', '.join(EVENT_SOURCES)}")
        if self.quiet_seconds < 0 or self.max_delay_seconds < self.quiet_seconds:
            raise UsageError("coalescing needs 0 <= quiet seconds <= max delay seconds")

    @property
    def event(self) -> str:
        """The event name stored with each occurrence (``ingest:advisory``, ``webhook``)."""
        return self.source if self.kind is None else f"{self.source}:{self.kind}"

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "event",
            "on": self.event,
            "quietSeconds": self.quiet_seconds,
            "maxDelaySeconds": self.max_delay_seconds,
        }


Trigger = CronTrigger | OnceTrigger | EventTrigger


def parse_event(text: str, *, quiet_seconds: int = 30, max_delay_seconds: int = 300) -> EventTrigger:
    """``ingest:advisory`` / ``ingest:any`` / ``webhook`` → an :class:`EventTrigger`."""
    source, _, kind = text.partition(":")
    if source == "ingest":
        kinds = [k.value for k in Kind]
        if kind not in (*kinds, "any"):
            raise UsageError(f"--on {text!r}: ingest:<kind> with kind one of {', '.join(kinds)} or any")
    elif kind:
        raise UsageError(f"--on {text!r}: {source} takes no kind")
    return EventTrigger(source, kind or None, quiet_seconds, max_delay_seconds)


def trigger_from_json(value: Any) -> Trigger:
    """The inverse of each trigger's ``to_json`` (store rows and API bodies)."""
    if not isinstance(value, dict):
        raise UsageError("a trigger is an object with a type")
    kind = value.get("type")
    if kind == "cron":
        return CronTrigger(str(value.get("cron", "")), str(value.get("timezone", "UTC")))
    if kind == "once":
        return OnceTrigger(parse_time(str(value.get("at", "")), "at"))
    if kind == "event":
        return parse_event(
            str(value.get("on", "")),
            quiet_seconds=int(value.get("quietSeconds", 30)),
            max_delay_seconds=int(value.get("maxDelaySeconds", 300)),
        )
    raise UsageError(f"unknown trigger type {kind!r}: cron, once or event")


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Schedule:
    """A stored launch: everything a run needs, so a fired slot never consults the command line."""

    tenant: str
    name: str
    profile: str
    trigger: Trigger
    created_at: datetime
    selectors: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    catch_up: CatchUp = CatchUp.ONCE
    paused: bool = False
    # None: sign when the launcher has a key (the default); True: a slot without a key fails
    # rather than publish an unsigned bundle; False: never sign. The key is the launcher's,
    # never stored here.
    sign: bool | None = None
    encrypt_to: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validate_tenant(self.tenant)
        validate_name(self.name)
        if self.created_at.tzinfo is None:
            raise UsageError("created_at must be aware")

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "name": self.name,
            "profile": self.profile,
            "trigger": self.trigger.to_json(),
            "selectors": list(self.selectors),
            "options": list(self.options),
            "targets": list(self.targets),
            "catchUp": self.catch_up.value,
            "paused": self.paused,
            "sign": self.sign,
            "encryptTo": list(self.encrypt_to),
            "createdAt": format_time(self.created_at),
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Schedule:
        return cls(
            tenant=str(value["tenant"]),
            name=str(value["name"]),
            profile=str(value["profile"]),
            trigger=trigger_from_json(value["trigger"]),
            created_at=parse_time(str(value["createdAt"]), "createdAt"),
            selectors=tuple(value.get("selectors", ())),
            options=tuple(value.get("options", ())),
            targets=tuple(value.get("targets", ())),
            catch_up=CatchUp(value.get("catchUp", "once")),
            paused=bool(value.get("paused", False)),
            sign=sign_choice(value.get("sign")),
            encrypt_to=tuple(str(r) for r in value.get("encryptTo", ())),
        )


def sign_choice(value: Any) -> bool | None:
    """``sign`` is true, false or null (sign when a key is configured); anything else is refused."""
    if value is not None and not isinstance(value, bool):
        raise UsageError("sign must be true, false or null", details={"field": "sign"})
    return value
