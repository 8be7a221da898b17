"""OpenTelemetry traces of an export: export.run > plan, read, adapt, write, sign, publish.

Off by default: without configuration the OpenTelemetry API hands out no-op spans, so
an offline CLI run sends nothing anywhere. ``STELLA_OTEL_EXPORTER`` switches the SDK on
(``console`` for a local look, ``otlp`` for a collector over OTLP/HTTP protobuf -- its
endpoint from the standard ``OTEL_EXPORTER_OTLP_*`` variables, and checked against the
egress allowlist like every other destination, before any span is sent). Tests install a provider with an in-memory exporter through
:func:`use_provider` rather than the process-global one, so several tests (and the
service's apps) can each capture their own spans.

Spans that Beam workers open (read, adapt, write) join the run's trace through a W3C
``traceparent`` carried in the pipeline's parameters: :func:`carrier` in the driver,
:func:`stage_span` in the worker.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from stella.errors import UsageError

__all__ = [
    "EXPORTER_ENV",
    "SPAN_NAMES",
    "TraceContext",
    "carrier",
    "configure_from_env",
    "current_ids",
    "flush",
    "otlp_endpoint",
    "span",
    "stage_span",
    "trace_id",
    "tracer",
    "use_provider",
]

EXPORTER_ENV = "STELLA_OTEL_EXPORTER"
SPAN_NAMES = (
    "export.run",
    "export.plan",
    "export.read",
    "export.adapt",
    "export.write",
    "export.sign",
    "export.publish",
)
_PROVIDER: TracerProvider | None = None
_WORKER_CONFIGURED = False
TraceContext = tuple[tuple[str, str], ...] | Mapping[str, str]
"""W3C trace-context headers (``traceparent``), as pairs so a frozen request can carry them."""
_PROPAGATOR = TraceContextTextMapPropagator()
_OTLP_DEFAULT_BASE = "http://localhost:4318"


def use_provider(provider: TracerProvider | None) -> TracerProvider | None:
    """Route this package's spans to ``provider`` (None: back to the global one); returns the previous."""
    global _PROVIDER
    previous, _PROVIDER = _PROVIDER, provider
    return previous


def tracer() -> Tracer:
    provider = _PROVIDER or trace.get_tracer_provider()
    return provider.get_tracer("stella.export")


def configure_from_env(
    environ: Mapping[str, str] | None = None, *, egress: Callable[[str, int | None], None] | None = None
) -> None:
    """Install an SDK provider when ``STELLA_OTEL_EXPORTER`` asks for one (none by default).

    ``egress(host, port)`` vets the OTLP collector before anything is sent (the CLI passes
    the egress allowlist's check; Beam workers inherit a destination their driver vetted).

    Raises:
        UsageError: an unknown exporter name or a malformed OTLP endpoint.
        EgressDeniedError: (from ``egress``) the collector's host is not allowed.
    """
    env = os.environ if environ is None else environ
    name = env.get(EXPORTER_ENV, "").strip().lower()
    if name in ("", "none"):
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    exporter: SpanExporter
    if name == "console":
        exporter = ConsoleSpanExporter()
    elif name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise UsageError(
                f"{EXPORTER_ENV}=otlp needs opentelemetry-exporter-otlp-proto-http installed"
            ) from exc
        endpoint = otlp_endpoint(env)
        if egress is not None:
            parts = urllib.parse.urlsplit(endpoint)
            egress(parts.hostname or "", parts.port)
        exporter = OTLPSpanExporter(endpoint=endpoint)
    else:
        raise UsageError(f"{EXPORTER_ENV}={name!r}: one of none, console, otlp")
    provider = SdkProvider(resource=Resource.create({"service.name": "stella-export"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    use_provider(provider)


def otlp_endpoint(env: Mapping[str, str]) -> str:
    """The OTLP/HTTP traces URL, resolved as the exporter would resolve it.

    The signal-specific variable, else the base endpoint plus ``/v1/traces``, else the
    local collector. Resolved here and handed to the exporter, so that the host the egress
    check vets is the host the spans go to.

    Raises:
        UsageError: not an http(s) URL with a host.
    """
    url = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if not url:
        base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or _OTLP_DEFAULT_BASE
        url = base.rstrip("/") + "/v1/traces"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"OTLP endpoint {url!r} is not an http(s) URL", details={"endpoint": url})
    return url


def flush(timeout_millis: int = 5_000) -> bool:
    """Send the spans the batch processor still holds; False if that timed out.

    The CLI's provider is flushed by the SDK's exit hook, but a process that ends with
    ``os._exit`` -- a forked service run, a multiprocessing child -- skips exit hooks, and
    its last spans (usually the whole run) would be dropped without this.
    """
    flusher = getattr(_PROVIDER, "force_flush", None)
    return bool(flusher(timeout_millis)) if callable(flusher) else True


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Span]:
    """A child of the current span (a root when there is none); errors mark it failed."""
    with tracer().start_as_current_span(name, attributes=_clean(attributes)) as current:
        yield current


def carrier() -> tuple[tuple[str, str], ...]:
    """The current span as W3C trace-context headers, to hand to Beam workers."""
    headers: dict[str, str] = {}
    _PROPAGATOR.inject(headers)
    return tuple(sorted(headers.items()))


@contextmanager
def stage_span(name: str, headers: TraceContext, **attributes: Any) -> Iterator[Span]:
    """A span in a Beam worker, child of the driver's span that ``headers`` carry.

    The span is deliberately not made current: a DoFn's outputs run fused downstream
    steps inside its ``process``, and their spans must be siblings under the run, not
    children of the read that happened to feed them.
    """
    _configure_worker()
    parent = _PROPAGATOR.extract(dict(headers))
    current = tracer().start_span(name, context=parent, attributes=_clean(attributes))
    try:
        yield current
    except BaseException as exc:
        current.record_exception(exc)
        current.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        current.end()


def _configure_worker() -> None:
    """A worker process (``--workers N``, Dask) configures its own exporter from the environment once."""
    global _WORKER_CONFIGURED
    if not _WORKER_CONFIGURED:
        _WORKER_CONFIGURED = True
        if _PROVIDER is None:
            configure_from_env()


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current recorded span as hex, or None (tracing off, no span)."""
    current = trace.get_current_span().get_span_context()
    if not current.is_valid:
        return None
    return format(current.trace_id, "032x"), format(current.span_id, "016x")


def trace_id() -> str | None:
    """The current trace id (32 hex digits), or None outside a recorded span."""
    ids = current_ids()
    return ids[0] if ids else None


def _clean(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in attributes.items() if value is not None}
