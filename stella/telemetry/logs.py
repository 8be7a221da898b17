"""Structured JSON log lines with a correlation id (BRIEF contract 10).

The correlation id lives in a context variable: the API sets it per request (the
trace id every error payload carries), a worker sets it to the run id for the whole
run, so every line a run causes -- in the API, the worker and the library code it
calls -- can be joined on one field.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

from stella.telemetry.tracing import current_ids
from stella.timefmt import rfc3339

__all__ = ["JsonFormatter", "configure_json_logging", "correlation", "current_correlation", "lifecycle"]

_CORRELATION: contextvars.ContextVar[str | None] = contextvars.ContextVar("stella_correlation", default=None)
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def current_correlation() -> str | None:
    return _CORRELATION.get()


@contextmanager
def correlation(value: str) -> Iterator[None]:
    token = _CORRELATION.set(value)
    try:
        yield
    finally:
        _CORRELATION.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``extra=`` fields are carried as top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": rfc3339(datetime.fromtimestamp(record.created, UTC), fraction="milli"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        ids = current_ids()
        if ids is not None:
            line["traceId"], line["spanId"] = ids
        correlation_id = getattr(record, "correlationId", None) or _CORRELATION.get() or (ids and ids[0])
        if correlation_id:
            line["correlationId"] = correlation_id
        line.update(
            {
                key: value
                for key, value in record.__dict__.items()
                if key not in _STANDARD and key != "correlationId" and not key.startswith("_")
            }
        )
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, sort_keys=True)


def configure_json_logging(stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """JSON lines on stderr for our packages and the HTTP server."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("stella", "transforms", "pipelines", "runners", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True  # the app logs each request itself, as JSON


def lifecycle(logger: logging.Logger, event: str, **fields: Any) -> None:
    """A run lifecycle event (plan, read, adapter, write, sign, publish, ...) as one log line."""
    logger.info(event, extra={"event": event, **fields})
