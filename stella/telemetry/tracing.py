"""OpenTelemetry traces of an export: export.run > plan, read, adapt, write, sign, publish.

Off by default: without configuration the OpenTelemetry API hands out no-op spans, so
an offline CLI run sends nothing anywhere. ``STELLA_OTEL_EXPORTER`` switches the SDK on
(``console`` for a local look, ``otlp`` for a collector -- its endpoint from the
standard ``OTEL_EXPORTER_OTLP_*`` variables, and subject to the egress allowlist like
every other destination). Tests install a provider with an in-memory exporter through
:func:`use_provider` rather than the process-global one, so several tests (and the
service's apps) can each capture their own spans.

Spans that Beam workers open (read, adapt, write) join the run's trace through a W3C
``traceparent`` carried in the pipeline's parameters: :func:`carrier` in the driver,
:func:`stage_span` in the worker.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
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


def use_provider(provider: TracerProvider | None) -> TracerProvider | None:
    """Route this package's spans to ``provider`` (None: back to the global one); returns the previous."""
    global _PROVIDER
    previous, _PROVIDER = _PROVIDER, provider
    return previous


def tracer() -> Tracer:
    provider = _PROVIDER or trace.get_tracer_provider()
    return provider.get_tracer("stella.export")


def configure_from_env(environ: Mapping[str, str] | None = None) -> None:
    """Install an SDK provider when ``STELLA_OTEL_EXPORTER`` asks for one (none by default).

    Raises:
        UsageError: an unknown exporter name.
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
        exporter = OTLPSpanExporter()
    else:
        raise UsageError(f"{EXPORTER_ENV}={name!r}: one of none, console, otlp")
    provider = SdkProvider(resource=Resource.create({"service.name": "stella-export"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    use_provider(provider)


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
