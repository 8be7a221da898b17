"""Routes under ``/api/export/schedules`` and the webhook ``/api/export/triggers/{name}``.

The same rules as the runs: the caller's tenant scopes every lookup (another tenant's
schedule is not found), ``export:read`` lists, ``export:run`` creates, pauses, resumes,
deletes and runs now -- a schedule is a run launched later. The webhook has its own
scope, ``export:trigger``, so a CI system can fire a schedule without being able to
start arbitrary runs. A schedule fired by the service becomes a queued run (its id is
on the fired slot); the workers execute it like any other, targets included.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pipelines.registry import get_profile
from stella.bundle.encrypt import parse_encryption
from stella.errors import UsageError
from stella.profiles import parse_profile_options
from stella.schedules.model import (
    CatchUp,
    Schedule,
    parse_event,
    parse_time,
    sign_choice,
    trigger_from_json,
    validate_name,
)
from stella.schedules.scheduler import record_webhook
from stella.selectors import parse_selectors
from stella.service.api import _call, _config, _principal
from stella.service.bodies import _strings, parse_json
from stella.service.store.schedules import SqlScheduleStore
from stella.service.targets import service_targets

__all__ = ["TRIGGER_SCOPE", "routes"]

TRIGGER_SCOPE = "export:trigger"
_PREFIX = "/api/export"


def _schedules(request: Request) -> SqlScheduleStore:
    store: SqlScheduleStore = request.app.state.schedules
    return store


def _render(store: SqlScheduleStore, schedule: Schedule) -> dict[str, Any]:
    links = {"trigger": f"{_PREFIX}/triggers/{schedule.name}"}
    return {**store.overview(schedule, datetime.now(UTC)), "links": links}


def _seconds(body: dict[str, Any], field: str, default: int) -> int:
    value = body.get(field, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise UsageError(f"{field} must be a non-negative integer", details={"field": field})
    return value


def _schedule_from(body: Any, tenant: str) -> Schedule:
    """A request body → a checked :class:`Schedule` (the checks of ``schedule create``)."""
    if not isinstance(body, dict):
        raise UsageError("the body must be a JSON object")
    known = {"name", "profile", "cron", "timezone", "at", "on", "quietSeconds", "maxDelaySeconds"}
    known |= {"trigger", "selectors", "options", "targets", "catchUp", "sign", "encryptTo"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise UsageError(f"unknown field {unknown[0]!r}", details={"field": unknown[0]})
    kinds = [key for key in ("cron", "at", "on", "trigger") if key in body]
    if len(kinds) != 1:
        raise UsageError("give exactly one of cron, at, on", details={"fields": kinds})
    if "cron" in body:
        trigger = trigger_from_json(
            {"type": "cron", "cron": body["cron"], "timezone": body.get("timezone", "UTC")}
        )
    elif "at" in body:
        trigger = trigger_from_json(
            {"type": "once", "at": str(parse_time(str(body["at"]), "at").isoformat())}
        )
    elif "on" in body:
        trigger = parse_event(
            str(body["on"]),
            quiet_seconds=_seconds(body, "quietSeconds", 30),
            max_delay_seconds=_seconds(body, "maxDelaySeconds", 300),
        )
    else:
        trigger = trigger_from_json(body["trigger"])
    profile = get_profile(str(body.get("profile", "")))
    selectors, options, targets = (tuple(_strings(body, f)) for f in ("selectors", "options", "targets"))
    parse_selectors(list(selectors))
    parse_profile_options(list(options), profile)
    service_targets(targets)  # egress and syntax refused now (403/400), again at every launch
    encrypt_to = tuple(_strings(body, "encryptTo"))
    parse_encryption(list(encrypt_to), environ={})
    return Schedule(
        tenant=tenant,
        name=validate_name(str(body.get("name", ""))),
        profile=profile.name,
        trigger=trigger,
        created_at=datetime.now(UTC),
        selectors=selectors,
        options=options,
        targets=targets,
        catch_up=CatchUp(str(body.get("catchUp", "once"))),
        sign=sign_choice(body.get("sign")),
        encrypt_to=encrypt_to,
    )


async def _create_schedule(request: Request) -> Response:
    principal = await _principal(request, "export:run")
    schedule = _schedule_from(parse_json(await request.body()), principal.tenant)
    if schedule.sign and not _config(request).sign_key:
        raise UsageError("sign: true needs a service signing key (stella serve --sign-key)")
    store = _schedules(request)
    await _call(store.create, schedule)
    headers = {"Location": f"{_PREFIX}/schedules/{schedule.name}"}
    return JSONResponse(await _call(_render, store, schedule), status_code=201, headers=headers)


async def _list_schedules(request: Request) -> Response:
    principal = await _principal(request, "export:read")
    store = _schedules(request)
    found = await _call(store.schedules, principal.tenant)
    return JSONResponse({"items": [await _call(_render, store, schedule) for schedule in found]})


async def _get_schedule(request: Request) -> Response:
    principal = await _principal(request, "export:read")
    store = _schedules(request)
    schedule = await _call(store.get, principal.tenant, validate_name(request.path_params["name"]))
    return JSONResponse(await _call(_render, store, schedule))


async def _change_schedule(request: Request) -> Response:
    principal = await _principal(request, "export:run")
    store, name = _schedules(request), validate_name(request.path_params["name"])
    action = request.path_params.get("action", "delete")
    if request.method == "DELETE":
        await _call(store.delete, principal.tenant, name)
        return Response(status_code=204)
    if action not in ("pause", "resume"):
        raise UsageError(f"unknown action {action!r}: pause or resume")
    schedule = await _call(store.set_paused, principal.tenant, name, action == "pause", datetime.now(UTC))
    return JSONResponse(await _call(_render, store, schedule))


async def _run_schedule_now(request: Request) -> Response:
    principal = await _principal(request, "export:run")
    scheduler = request.app.state.scheduler
    launch = await _call(scheduler.run_now, principal.tenant, validate_name(request.path_params["name"]))
    store = _schedules(request)
    fire = await _call(store.fire, launch.fire.tenant, launch.fire.name, launch.fire.key)
    (settled,) = await _call(store.settled, [fire])
    return JSONResponse(settled.to_json(), status_code=202)


async def _trigger(request: Request) -> Response:
    principal = await _principal(request, TRIGGER_SCOPE)
    name = validate_name(request.path_params["name"])
    event = await _call(record_webhook, _schedules(request), principal.tenant, name, datetime.now(UTC))
    return JSONResponse({"schedule": name, "event": event, "accepted": True}, status_code=202)


def routes() -> list[Route]:
    one = f"{_PREFIX}/schedules/{{name}}"
    return [
        Route(f"{_PREFIX}/schedules", _list_schedules, methods=["GET"]),
        Route(f"{_PREFIX}/schedules", _create_schedule, methods=["POST"]),
        Route(one, _get_schedule, methods=["GET"]),
        Route(one, _change_schedule, methods=["DELETE"]),
        Route(f"{one}/run", _run_schedule_now, methods=["POST"]),
        Route(f"{one}/{{action}}", _change_schedule, methods=["POST"]),
        Route(f"{_PREFIX}/triggers/{{name}}", _trigger, methods=["POST"]),
    ]
