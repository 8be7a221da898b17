"""The ASGI application: routes, the one error catch site, request telemetry.

Built with Starlette and served by uvicorn (``stella serve``). Every failure of any
route becomes the shared error body ``{code, message, details, traceId, timestamp}``
in :func:`_stella_error` or :func:`_unexpected_error`, the only places that render
errors; routes raise :class:`~stella.errors.StellaError` subclasses.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stella.errors import QuotaError, RangeNotSatisfiableError, StellaError, UnauthenticatedError
from stella.service import api, schedules_api
from stella.service.auth import AUDIENCE, ISSUER, Authenticator, LocalKeys
from stella.service.config import ServiceConfig
from stella.service.openapi import openapi_document
from stella.service.store.interface import RunStore
from stella.service.store.schedules import schedule_store_for
from stella.service.targets import service_scheduler
from stella.telemetry.logs import correlation
from stella.telemetry.metrics import CONTENT_TYPE, ServiceMetrics
from stella.timefmt import format_time

__all__ = ["create_app", "error_response"]

_LOG = logging.getLogger("stella.service.http")
_TRACE = re.compile(r"[A-Za-z0-9-]{8,64}")
# The Console loads only its own files and talks only to this origin.
_CONSOLE_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
CONSOLE = Path(__file__).with_name("console")


def _timestamp() -> str:
    return format_time(datetime.now(UTC).replace(microsecond=0))


def error_response(request: Request, exc: StellaError) -> JSONResponse:
    headers: dict[str, str] = {}
    if isinstance(exc, UnauthenticatedError):
        headers["WWW-Authenticate"] = 'Bearer realm="stella-export"'
    if isinstance(exc, QuotaError):
        headers["Retry-After"] = str(exc.retry_after)
        headers["X-Stella-Quota-Limit"] = str(exc.details.get("limit", ""))
        headers["X-Stella-Quota-Remaining"] = "0"
    if isinstance(exc, RangeNotSatisfiableError):
        headers["Content-Range"] = f"bytes */{exc.details['size']}"  # RFC 9110 §15.5.17
    payload = exc.to_payload(trace_id=request.state.trace_id, timestamp=_timestamp())
    return JSONResponse(payload, status_code=exc.spec.http_status, headers=headers)


async def _stella_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StellaError)
    return error_response(request, exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (unknown path or method) in the shared error shape."""
    assert isinstance(exc, HTTPException)
    from stella.errors import NotFoundError, UsageError

    error: StellaError = (
        NotFoundError("no such endpoint", details={"path": request.url.path[:200]})
        if exc.status_code == 404
        else UsageError(f"{request.method} is not allowed here", details={"status": exc.status_code})
    )
    response = error_response(request, error)
    if exc.status_code == 405:
        response.status_code = 405
    return response


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    _LOG.error("unexpected error", exc_info=exc, extra={"event": "internal_error"})
    error = StellaError(f"internal error ({type(exc).__name__}); the trace id identifies the log line")
    return error_response(request, error)


class _Telemetry:
    """Pure ASGI middleware (streams pass through untouched): trace id, JSON access log, latency."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        trace_id = supplied if _TRACE.fullmatch(supplied) else uuid.uuid4().hex
        scope.setdefault("state", {})["trace_id"] = trace_id
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-trace-id", trace_id.encode()))
                if scope["path"].startswith("/console"):
                    message["headers"].extend(_CONSOLE_HEADERS)
            await send(message)

        with correlation(trace_id):
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                elapsed = time.perf_counter() - started
                route = getattr(scope.get("route"), "path", "unmatched")
                self.metrics.request_seconds.labels(route, scope["method"], f"{status // 100}xx").observe(
                    elapsed
                )
                _LOG.info(
                    "request",
                    extra={
                        "event": "http_request",
                        "method": scope["method"],
                        "route": route,
                        "status": status,
                        "ms": round(elapsed * 1000, 2),
                    },
                )


def _health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def _ready(request: Request) -> Response:
    store: RunStore = request.app.state.store
    try:
        store.ping()
    except Exception as exc:
        _LOG.warning("not ready", extra={"event": "not_ready", "reason": type(exc).__name__})
        return JSONResponse({"status": "unavailable", "store": type(exc).__name__}, status_code=503)
    return JSONResponse({"status": "ready"})


def _metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)


def _openapi(request: Request) -> Response:
    return JSONResponse(openapi_document())


def create_app(
    config: ServiceConfig, store: RunStore, *, authenticator: Authenticator | None = None
) -> Starlette:
    """The app for one store; the authenticator defaults to the embedded key or the configured JWKS."""
    if authenticator is None:
        if config.jwks_url:
            authenticator = Authenticator(
                jwks_url=config.jwks_url,
                issuer=config.issuer or ISSUER,
                audience=config.audience or AUDIENCE,
            )
        else:
            authenticator = Authenticator(keys=LocalKeys.load_or_create(config.token_key))
    schedules = schedule_store_for(store)
    metrics = ServiceMetrics(store.stats, schedules.distribution_stats)
    routes: list[Any] = [
        Route("/", lambda request: RedirectResponse("/console/"), include_in_schema=False),
        Route("/healthz", _health),
        Route("/readyz", _ready),
        Route("/metrics", _metrics),
        Route("/openapi.json", _openapi),
        *api.routes(),
        *schedules_api.routes(),
        Mount("/console", app=StaticFiles(directory=CONSOLE, html=True), name="console"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            StellaError: _stella_error,
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
    )
    app.state.config = config
    app.state.store = store
    app.state.auth = authenticator
    app.state.metrics = metrics
    app.state.schedules = schedules
    app.state.scheduler = service_scheduler(config, store, schedules)
    app.add_middleware(_Telemetry, metrics=metrics)
    return app
