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
from typing import Any, TypeVar

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

_Labels = TypeVar("_Labels", bound=tuple[str, ...])
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


def _histogram(values: Sequence[float], edges: Sequence[float]) -> tuple[list[tuple[str, float]], float]:
    ordered = sorted(values)
    buckets: list[tuple[str, float]] = []
    index = 0
    for edge in edges:
        while index < len(ordered) and ordered[index] <= edge:
            index += 1
        buckets.append((str(edge), float(index)))
    buckets.append(("+Inf", float(len(ordered))))
    return buckets, float(sum(ordered))


def _histograms(
    name: str,
    documentation: str,
    labels: Sequence[str],
    series: Mapping[_Labels, Sequence[float]],
    edges: Sequence[float],
) -> HistogramMetricFamily:
    """One histogram family, a series per label tuple (sorted: scrapes read the same each time)."""
    family = HistogramMetricFamily(name, documentation, labels=list(labels))
    for key, values in sorted(series.items()):
        buckets, total = _histogram(values, edges)
        family.add_metric(list(key), buckets, total)
    return family


def _counters(
    name: str, documentation: str, labels: Sequence[str], counts: Mapping[_Labels, int]
) -> CounterMetricFamily:
    """One counter family, a series per label tuple (sorted)."""
    family = CounterMetricFamily(name, documentation, labels=list(labels))
    for key, count in sorted(counts.items()):
        family.add_metric(list(key), float(count))
    return family


class RunStatsCollector(Collector):
    """Turns :class:`RunStats` from the store into the contract's metric families."""

    def __init__(self, stats: Callable[[], RunStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        yield _histograms(
            "exporter_run_duration_seconds",
            "Wall time of finished export runs, from start to publish or failure",
            ["profile", "tenant"],
            stats.durations,
            DURATION_BUCKETS,
        )
        yield _counters(
            "exporter_bundle_bytes", "Bytes of bundles published", ["profile", "tenant"], stats.bundle_bytes
        )
        yield _counters(
            "exporter_run_failures",
            "Export runs that failed",
            ["profile", "tenant", "error_code"],
            stats.failures,
        )
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
        yield _histograms(
            "exporter_schedule_lag_seconds",
            "Seconds between a schedule's slot and its launch",
            ["tenant"],
            {(tenant,): values for tenant, values in stats.lags.items()},
            LAG_BUCKETS,
        )
        yield _counters(
            "exporter_schedule_fires", "Schedule slots fired, by outcome", ["tenant", "status"], stats.fires
        )
        yield _counters(
            "exporter_publish_attempts",
            "Publish attempts per target, retries included",
            ["kind", "target"],
            stats.attempts,
        )
        yield _counters(
            "exporter_publish_failures",
            "Targets that failed after their retries",
            ["kind", "target", "error_code"],
            stats.failures,
        )


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
