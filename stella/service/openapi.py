"""The OpenAPI 3.1 document the service serves at ``/openapi.json``.

Written out rather than inferred, because it is a contract: schemathesis tests the
running service against it (tests/service/test_openapi.py) and docs/api.md is
generated from it (``python -m stella.service.openapi --markdown``).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from stella import __version__
from stella.errors import EXIT_CODES
from stella.guards.ids import ID_PATTERN

__all__ = ["markdown", "openapi_document"]

_SCOPES = {
    "export:read": "list and inspect profiles and runs, follow run events",
    "export:run": "start and cancel runs",
    "export:download": "download bundles, manifests, provenance and single files",
    "export:profile:manage": "create and update stored profiles",
    "export:trigger": "fire a webhook-triggered schedule (POST /api/export/triggers/{name}) and nothing else",
}

_STRINGS = {"type": "array", "items": {"type": "string", "minLength": 1}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def _json(description: str, schema: dict[str, Any], headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        response["headers"] = headers
    return response


_COMMON_ERRORS = {
    "400": _error("malformed request (ERR_EXPORT_USAGE)"),
    "401": _error("no valid bearer token (ERR_EXPORT_UNAUTHENTICATED)"),
    "403": _error("missing scope, or X-Stella-Tenant not in the token (ERR_EXPORT_FORBIDDEN)"),
}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_NOT_FOUND = {"404": _error("not found for this tenant (ERR_EXPORT_NOT_FOUND)")}
_NOT_READY = {"409": _error("the run has no published bundle (ERR_EXPORT_NOT_READY)")}
_RUN_ID = {
    "name": "run_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^run-[0-9a-f]{32}$"},
}
_TENANT = {
    "name": "X-Stella-Tenant",
    "in": "header",
    "required": False,
    "description": "the tenant to act for when the token carries several",
    "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{1,62}$"},
}
_ETAG_HEADERS = {
    "ETag": {"description": "the file's sha256 digest, quoted", "schema": {"type": "string"}},
    "Accept-Ranges": {"schema": {"type": "string"}},
}
_IF_NONE_MATCH = {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}}
_RANGE = {
    "name": "Range",
    "in": "header",
    "required": False,
    "description": "bytes=START-[END]: resume a download",
    "schema": {"type": "string"},
}


def _op(
    summary: str,
    scope: str | None,
    responses: dict[str, Any],
    *,
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    operation_id: str,
) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "operationId": operation_id, "responses": responses}
    if scope is not None:
        operation["security"] = [{"bearer": [scope]}]
        operation["x-required-scope"] = scope
        operation["parameters"] = [_TENANT, *(parameters or [])]
        operation["responses"] = {**responses, **_COMMON_ERRORS}
    elif parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return operation


def _file(
    summary: str, media: str, operation_id: str, extra: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "get": _op(
            summary,
            "export:download",
            {
                "200": {
                    "description": "the file",
                    "headers": _ETAG_HEADERS,
                    "content": {media: {"schema": {"type": "string", "format": "binary"}}},
                },
                "206": {"description": "the requested byte range", "headers": _ETAG_HEADERS},
                "304": {"description": "If-None-Match matched the ETag"},
                "416": _error(
                    "the range starts beyond the end of the file (ERR_EXPORT_RANGE_NOT_SATISFIABLE)"
                ),
                **_NOT_FOUND,
                **_NOT_READY,
            },
            parameters=[_RUN_ID, *(extra or []), _RANGE, _IF_NONE_MATCH],
            operation_id=operation_id,
        )
    }


def _schemas() -> dict[str, Any]:
    return {
        "Error": {
            "type": "object",
            "required": ["code", "message", "details", "traceId", "timestamp"],
            "properties": {
                "code": {"type": "string", "enum": sorted(EXIT_CODES)},
                "message": {"type": "string"},
                "details": {"type": "object"},
                "traceId": {"type": "string"},
                "timestamp": {"type": "string"},
            },
        },
        "RunRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["profile"],
            "properties": {
                "profile": {
                    "type": "string",
                    "description": "a built-in profile (json:raw) or a stored profile",
                },
                "profileRevision": {"type": "integer", "minimum": 1},
                "selectors": {**_STRINGS, "description": "key=value[,value] as in docs/selectors.md"},
                "options": {"type": "object", "additionalProperties": {"type": "string"}},
                "asOf": {"type": "string", "format": "date-time"},
                "encryptTo": {"type": "array", "items": {"type": "string", "pattern": "^age1"}},
                "sign": {"type": "boolean"},
                "allowEmpty": {"type": "boolean", "description": "publish even if nothing is selected"},
                "targets": {
                    **_STRINGS,
                    "description": "file://, gs:// or oci:// URLs (docs/distribution.md); "
                    "when given, they replace a stored profile's targets",
                },
            },
        },
        "ScheduleRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "profile"],
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{1,62}$"},
                "profile": {"type": "string"},
                "cron": {"type": "string", "description": "five-field cron expression"},
                "timezone": {"type": "string", "description": "IANA zone of the cron expression"},
                "at": {"type": "string", "format": "date-time"},
                "on": {"type": "string", "description": "ingest:<kind>, ingest:any or webhook"},
                "quietSeconds": {"type": "integer", "minimum": 0},
                "maxDelaySeconds": {"type": "integer", "minimum": 0},
                "selectors": _STRINGS,
                "options": _STRINGS,
                "targets": _STRINGS,
                "catchUp": {"type": "string", "enum": ["once", "skip"]},
                "sign": {
                    "type": ["boolean", "null"],
                    "description": "true: every slot is signed with the service's key (refused without one; a "
                    "slot fired without one fails); false: never signed; null (default): signed when the "
                    "service has a key",
                },
                "encryptTo": {**_STRINGS, "description": "recipients each bundle's data/ is encrypted for"},
            },
        },
        "Schedule": {
            "type": "object",
            "required": ["name", "tenant", "profile", "trigger", "paused", "nextSlot", "fires"],
            "properties": {
                "name": {"type": "string"},
                "tenant": {"type": "string"},
                "profile": {"type": "string"},
                "trigger": {"type": "object"},
                "paused": {"type": "boolean"},
                "sign": {"type": ["boolean", "null"]},
                "encryptTo": _STRINGS,
                "nextSlot": {"type": ["string", "null"], "description": "next cron or one-off instant (UTC)"},
                "fires": {"type": "array", "items": _ref("Fire")},
            },
        },
        "Fire": {
            "type": "object",
            "description": "A fired slot; a slot the service launched shows its run's state "
            "(launched while queued or running, then the run's outcome; failed if a target failed)",
            "required": ["schedule", "tenant", "key", "slot", "firedAt", "status", "result"],
            "properties": {
                "schedule": {"type": "string"},
                "tenant": {"type": "string"},
                "key": {"type": "string"},
                "slot": {"type": "string"},
                "firedAt": {"type": "string"},
                "status": {
                    "type": "string",
                    "enum": ["launched", "succeeded", "failed", "cancelled"],
                },
                "result": {
                    "type": "object",
                    "properties": {
                        "runId": {"type": "string"},
                        "runStatus": {"type": "string"},
                        "exportId": {"type": "string"},
                        "targets": {"type": "array", "items": {"type": "object"}},
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                        },
                    },
                },
            },
        },
        "Run": {
            "type": "object",
            "required": ["runId", "tenant", "status", "profile", "createdAt", "links"],
            "properties": {
                "runId": {"type": "string"},
                "tenant": {"type": "string"},
                "status": {
                    "type": "string",
                    "enum": ["queued", "running", "succeeded", "failed", "cancelled", "expired"],
                },
                "profile": {"type": "string"},
                "storedProfile": {"type": ["string", "null"]},
                "selectors": _STRINGS,
                "options": {"type": "object"},
                "createdAt": {"type": "string"},
                "startedAt": {"type": ["string", "null"]},
                "finishedAt": {"type": ["string", "null"]},
                "attempts": {"type": "integer"},
                "cancelRequested": {"type": "boolean"},
                "exportId": {"type": ["string", "null"]},
                "progress": {"type": "object"},
                "result": {"type": ["object", "null"]},
                "error": {"type": ["object", "null"]},
                "links": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "RunPage": {
            "type": "object",
            "required": ["items", "nextCursor"],
            "properties": {
                "items": {"type": "array", "items": _ref("Run")},
                "nextCursor": {"type": ["string", "null"]},
            },
        },
        "ProfileRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["profile"],
            "properties": {
                "name": {"type": "string", "pattern": f"^(?:{ID_PATTERN.pattern})$"},
                "profile": {"type": "string"},
                "selectors": _STRINGS,
                "options": {"type": "object", "additionalProperties": {"type": "string"}},
                "encryptTo": {"type": "array", "items": {"type": "string", "pattern": "^age1"}},
                "sign": {"type": "boolean"},
                "description": {"type": "string", "maxLength": 1000},
                "targets": {
                    **_STRINGS,
                    "description": "file://, gs:// or oci:// URLs every run of this profile publishes to, "
                    "checked against the egress allowlist when stored and again at each run",
                },
            },
        },
        "StoredProfile": {
            "type": "object",
            "required": ["name", "revision", "profile"],
            "properties": {
                "name": {"type": "string"},
                "revision": {"type": "integer"},
                "profile": {"type": "string"},
                "targets": _STRINGS,
            },
        },
        "Profiles": {
            "type": "object",
            "required": ["builtin", "stored"],
            "properties": {
                "builtin": {"type": "array", "items": {"type": "object"}},
                "stored": {"type": "array", "items": _ref("StoredProfile")},
            },
        },
    }


def openapi_document() -> dict[str, Any]:
    runs = "/api/export/runs/{run_id}"
    paths: dict[str, Any] = {
        "/healthz": {
            "get": _op("liveness", None, {"200": _json("alive", {"type": "object"})}, operation_id="health")
        },
        "/readyz": {
            "get": _op(
                "readiness: the run store answers",
                None,
                {"200": _json("ready", {"type": "object"}), "503": _json("not ready", {"type": "object"})},
                operation_id="ready",
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics",
                None,
                {
                    "200": {
                        "description": "text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                operation_id="metrics",
            )
        },
        "/api/export/profiles": {
            "get": _op(
                "built-in and stored profiles of the tenant",
                "export:read",
                {"200": _json("profiles", _ref("Profiles"))},
                operation_id="listProfiles",
            ),
            "post": _op(
                "store a named profile (revision 1)",
                "export:profile:manage",
                {
                    "201": _json("created", _ref("StoredProfile")),
                    "409": _error("the name exists (ERR_EXPORT_CONFLICT)"),
                },
                body=_ref("ProfileRequest"),
                operation_id="createProfile",
            ),
        },
        "/api/export/profiles/{name}": {
            "get": _op(
                "one profile (a stored one at its latest or a given revision)",
                "export:read",
                {"200": _json("the profile", {"type": "object"}), **_NOT_FOUND},
                parameters=[
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                    {
                        "name": "revision",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1},
                    },
                ],
                operation_id="getProfile",
            ),
            "put": _op(
                "update a stored profile (a new revision)",
                "export:profile:manage",
                {"200": _json("updated", _ref("StoredProfile")), **_NOT_FOUND},
                parameters=[{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                body=_ref("ProfileRequest"),
                operation_id="updateProfile",
            ),
        },
        "/api/export/runs": {
            "post": _op(
                "queue a run (Idempotency-Key replays return the first run)",
                "export:run",
                {
                    "202": _json("queued", _ref("Run")),
                    "200": _json("Idempotency-Key replay: the first run", _ref("Run")),
                    "409": _error("Idempotency-Key reused with another body (ERR_EXPORT_CONFLICT)"),
                    "422": _error("the request cannot be run (ERR_EXPORT_INPUT)"),
                    "429": _error("tenant quota of active runs used up (ERR_EXPORT_QUOTA), see Retry-After"),
                    "501": _error("profile not available in this build"),
                    **_NOT_FOUND,
                },
                parameters=[
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    }
                ],
                body=_ref("RunRequest"),
                operation_id="createRun",
            ),
            "get": _op(
                "the tenant's runs, newest first, with cursor paging",
                "export:read",
                {"200": _json("a page of runs", _ref("RunPage"))},
                parameters=[
                    {
                        "name": "status",
                        "in": "query",
                        "required": False,
                        "schema": _schemas()["Run"]["properties"]["status"],
                    },
                    {"name": "profile", "in": "query", "required": False, "schema": {"type": "string"}},
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                    },
                    {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"}},
                ],
                operation_id="listRuns",
            ),
        },
        runs: {
            "get": _op(
                "one run with its progress and result",
                "export:read",
                {"200": _json("the run", _ref("Run")), **_NOT_FOUND},
                parameters=[_RUN_ID],
                operation_id="getRun",
            )
        },
        f"{runs}/cancel": {
            "post": _op(
                "cancel a queued or running run",
                "export:run",
                {"202": _json("the run (cancelled, or cancellation requested)", _ref("Run")), **_NOT_FOUND},
                parameters=[_RUN_ID],
                operation_id="cancelRun",
            )
        },
        f"{runs}/events": {
            "get": _op(
                "run events as Server-Sent Events: queued, started, progress, artifact_ready, succeeded | failed | cancelled",
                "export:read",
                {
                    "200": {
                        "description": "event stream",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **_NOT_FOUND,
                },
                parameters=[
                    _RUN_ID,
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "pattern": "^[0-9]+$"},
                    },
                    {
                        "name": "after",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 0},
                    },
                ],
                operation_id="runEvents",
            )
        },
        f"{runs}/manifest": _file("the bundle's export.json", "application/json", "getManifest"),
        f"{runs}/provenance": _file("the bundle's provenance.json", "application/json", "getProvenance"),
        f"{runs}/download": _file(
            "the bundle as one deterministic .tar.zst", "application/zstd", "downloadBundle"
        ),
        f"{runs}/files/{{path}}": _file(
            "one file the manifest lists",
            "application/octet-stream",
            "downloadFile",
            [{"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}],
        ),
        "/api/export/schedules": {
            "get": _op(
                "the tenant's schedules: next slot, latest fired slots with their runs' outcomes",
                "export:read",
                {
                    "200": _json(
                        "schedules",
                        {
                            "type": "object",
                            "required": ["items"],
                            "properties": {"items": {"type": "array", "items": _ref("Schedule")}},
                        },
                    )
                },
                operation_id="listSchedules",
            ),
            "post": _op(
                "store a schedule (cron, one-off or event trigger) with its targets, signing and encryption",
                "export:run",
                {
                    "201": _json("created", _ref("Schedule")),
                    "409": _error("the name is taken (ERR_EXPORT_CONFLICT)"),
                },
                body=_ref("ScheduleRequest"),
                operation_id="createSchedule",
            ),
        },
        "/api/export/schedules/{name}": {
            "get": _op(
                "one schedule, its next slot and latest fired slots with their runs' outcomes",
                "export:read",
                {"200": _json("schedule", _ref("Schedule")), **_NOT_FOUND},
                parameters=[_NAME],
                operation_id="getSchedule",
            ),
            "delete": _op(
                "remove a schedule",
                "export:run",
                {"204": {"description": "deleted"}, **_NOT_FOUND},
                parameters=[_NAME],
                operation_id="deleteSchedule",
            ),
        },
        "/api/export/schedules/{name}/run": {
            "post": _op(
                "fire the schedule now: a queued run with its targets",
                "export:run",
                {"202": _json("the fired slot (its result names the run)", _ref("Fire")), **_NOT_FOUND},
                parameters=[_NAME],
                operation_id="runScheduleNow",
            )
        },
        "/api/export/schedules/{name}/{action}": {
            "post": _op(
                "pause or resume (a pause is never caught up)",
                "export:run",
                {"200": _json("schedule", _ref("Schedule")), **_NOT_FOUND},
                parameters=[
                    _NAME,
                    {
                        "name": "action",
                        "in": "path",
                        "required": True,
                        "schema": {"enum": ["pause", "resume"]},
                    },
                ],
                operation_id="changeSchedule",
            )
        },
        "/api/export/triggers/{name}": {
            "post": _op(
                "webhook: fire a schedule created with on=webhook (bursts coalesced)",
                "export:trigger",
                {"202": _json("event recorded", {"type": "object"}), **_NOT_FOUND},
                parameters=[_NAME],
                operation_id="triggerSchedule",
            )
        },
        f"{runs}/verification": {
            "get": _op(
                "offline verification of the published bundle (digests, counts, provenance binding)",
                "export:download",
                {"200": _json("verification report", {"type": "object"}), **_NOT_FOUND, **_NOT_READY},
                parameters=[_RUN_ID],
                operation_id="verifyRun",
            )
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Stella Export Center API",
            "version": __version__,
            "description": "Signed, reproducible evidence bundles. Errors: {code, message, details, traceId, timestamp}.",
        },
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": json.dumps(_SCOPES),
                }
            },
        },
    }


def markdown() -> str:
    """docs/api.md's endpoint table, generated from the document above."""
    lines = ["| method | path | scope | summary |", "|---|---|---|---|"]
    for path, item in openapi_document()["paths"].items():
        for method, operation in item.items():
            scope = operation.get("x-required-scope", "none")
            lines.append(f"| {method.upper()} | `{path}` | `{scope}` | {operation['summary']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m stella.service.openapi [--markdown]
    sys.stdout.write(
        markdown() if "--markdown" in sys.argv else json.dumps(openapi_document(), indent=2) + "\n"
    )
