"""Prometheus metrics of the Export Center (BRIEF contract 10), on prometheus_client.

Runs execute in worker processes, possibly on other machines, so per-process counters
would each see a slice. Run metrics are therefore *collected* at scrape time from the
run store, the one place every process writes to: whichever API process is scraped
reports the same, complete figures. Request-path metrics (latency of API calls) are
ordinary per-process instruments.

Metric names are stable API: dashboards and alerts use them (docs/api.md lists them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "DURATION_BUCKETS",
    "CONTENT_TYPE",
    "LAG_BUCKETS",
    "DistributionCollector",
    "DistributionStats",
    "RunStats",
    "RunStatsCollector",
    "ServiceMetrics",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds. The runbook's alert thresholds (120 s delta, 300 s full) are bucket edges.
DURATION_BUCKETS: tuple[float, ...] = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


@dataclass(frozen=True)
class RunStats:
    """Aggregates over the run store, computed by the store in one pass per scrape.

    ``durations`` maps (profile, tenant) to the finished runs' durations in seconds;
    ``failures`` maps (profile, tenant, error_code) to a count; ``bundle_bytes`` maps
    (profile, tenant) to bytes published; ``queued`` and ``running`` are current counts.
    """

    durations: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    failures: dict[tuple[str, str, str], int] = field(default_factory=dict)
    bundle_bytes: dict[tuple[str, str], int] = field(default_factory=dict)
    queued: int = 0
    running: int = 0


def _histogram(
    values: Sequence[float], edges: Sequence[float] = DURATION_BUCKETS
) -> tuple[list[tuple[str, float]], float]:
    ordered = sorted(values)
    buckets: list[tuple[str, float]] = []
    index = 0
    for edge in edges:
        while index < len(ordered) and ordered[index] <= edge:
            index += 1
        buckets.append((str(edge), float(index)))
    buckets.append(("+Inf", float(len(ordered))))
    return buckets, float(sum(ordered))


class RunStatsCollector(Collector):
    """Turns :class:`RunStats` from the store into the contract's metric families."""

    def __init__(self, stats: Callable[[], RunStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        duration = HistogramMetricFamily(
            "exporter_run_duration_seconds",
            "Wall time of finished export runs, from start to publish or failure",
            labels=["profile", "tenant"],
        )
        for (profile, tenant), values in sorted(stats.durations.items()):
            buckets, total = _histogram(values)
            duration.add_metric([profile, tenant], buckets, total)
        yield duration
        published = CounterMetricFamily(
            "exporter_bundle_bytes", "Bytes of bundles published", labels=["profile", "tenant"]
        )
        for (profile, tenant), count in sorted(stats.bundle_bytes.items()):
            published.add_metric([profile, tenant], float(count))
        yield published
        failures = CounterMetricFamily(
            "exporter_run_failures", "Export runs that failed", labels=["profile", "tenant", "error_code"]
        )
        for (profile, tenant, code), count in sorted(stats.failures.items()):
            failures.add_metric([profile, tenant, code], float(count))
        yield failures
        yield GaugeMetricFamily("exporter_queue_depth", "Runs waiting for a worker", value=stats.queued)
        yield GaugeMetricFamily("exporter_runs_in_flight", "Runs a worker is executing", value=stats.running)


# Seconds between a schedule's slot and its launch: a tick interval, a queue wait, a catch-up.
LAG_BUCKETS: tuple[float, ...] = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0)


@dataclass(frozen=True)
class DistributionStats:
    """Schedules and publishing, aggregated from the store like :class:`RunStats`.

    ``lags`` maps tenant to the fired slots' lags in seconds; ``fires`` maps (tenant,
    status) to fired slots; ``attempts`` maps (kind, target) to publish attempts
    (retries included); ``failures`` maps (kind, target, error_code) to targets that
    failed after their retries.
    """

    lags: dict[str, list[float]] = field(default_factory=dict)
    fires: dict[tuple[str, str], int] = field(default_factory=dict)
    attempts: dict[tuple[str, str], int] = field(default_factory=dict)
    failures: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def add_targets(self, results: Iterable[Mapping[str, Any]]) -> None:
        """Count recorded target results (``TargetResult.to_json()``)."""
        for result in results:
            key = (str(result.get("kind")), str(result.get("target")))
            self.attempts[key] = self.attempts.get(key, 0) + int(result.get("attempts") or 0)
            if result.get("status") == "failed":
                code = str((result.get("error") or {}).get("code", "ERR_EXPORT_INTERNAL"))
                self.failures[(*key, code)] = self.failures.get((*key, code), 0) + 1


class DistributionCollector(Collector):
    """Turns :class:`DistributionStats` into the schedule and publish metric families."""

    def __init__(self, stats: Callable[[], DistributionStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        lag = HistogramMetricFamily(
            "exporter_schedule_lag_seconds",
            "Seconds between a schedule's slot and its launch",
            labels=["tenant"],
        )
        for tenant, values in sorted(stats.lags.items()):
            buckets, total = _histogram(values, LAG_BUCKETS)
            lag.add_metric([tenant], buckets, total)
        yield lag
        fires = CounterMetricFamily(
            "exporter_schedule_fires", "Schedule slots fired, by outcome", labels=["tenant", "status"]
        )
        for (tenant, status), count in sorted(stats.fires.items()):
            fires.add_metric([tenant, status], float(count))
        yield fires
        attempts = CounterMetricFamily(
            "exporter_publish_attempts",
            "Publish attempts per target, retries included",
            labels=["kind", "target"],
        )
        for (kind, target), count in sorted(stats.attempts.items()):
            attempts.add_metric([kind, target], float(count))
        yield attempts
        failures = CounterMetricFamily(
            "exporter_publish_failures",
            "Targets that failed after their retries",
            labels=["kind", "target", "error_code"],
        )
        for (kind, target, code), count in sorted(stats.failures.items()):
            failures.add_metric([kind, target, code], float(count))
        yield failures


class ServiceMetrics:
    """One registry per app instance (tests run several apps in one process)."""

    def __init__(
        self, stats: Callable[[], RunStats], distribution: Callable[[], DistributionStats] | None = None
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(RunStatsCollector(stats))
        if distribution is not None:
            self.registry.register(DistributionCollector(distribution))
        self.request_seconds = Histogram(
            "exporter_http_request_duration_seconds",
            "API request latency by route template and status class",
            labelnames=["route", "method", "status"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
