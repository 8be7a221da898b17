"""The Grafana dashboard and the metrics table in docs use exactly the metrics /metrics exposes."""

from __future__ import annotations

import json
import re

from prometheus_client.parser import text_string_to_metric_families

from stella.telemetry.metrics import DistributionStats, RunStats, ServiceMetrics
from tests.support import REPO

DASHBOARD = REPO / "docs" / "grafana-export-center.json"
_NAME = re.compile(r"\bexporter_[a-z0-9_]+\b")


def _exposed() -> tuple[set[str], set[str]]:
    """(sample names, family names) of a service's /metrics with every family populated."""
    runs = RunStats(
        durations={("json:raw", "acme"): [3.0, 40.0]},
        failures={("json:raw", "acme", "ERR_EXPORT_INPUT"): 1},
        bundle_bytes={("json:raw", "acme"): 1234},
        queued=1,
        running=1,
    )
    distribution = DistributionStats(
        lags={"acme": [2.0, 700.0]},
        fires={("acme", "succeeded"): 2},
        attempts={("oci", "oci://127.0.0.1:5000/x"): 3},
        failures={("oci", "oci://127.0.0.1:5000/x", "ERR_EXPORT_REMOTE"): 1},
    )
    metrics = ServiceMetrics(lambda: runs, lambda: distribution)
    metrics.request_seconds.labels("/api/export/runs", "GET", "2xx").observe(0.01)
    families = list(text_string_to_metric_families(metrics.render().decode()))
    return {sample.name for family in families for sample in family.samples}, {f.name for f in families}


def test_every_dashboard_expression_uses_an_exposed_metric() -> None:
    samples, families = _exposed()
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    expressions += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    used = {name for expression in expressions for name in _NAME.findall(expression)}
    assert used, "the dashboard queries no exporter_ metric"
    assert used <= samples, f"not exposed: {sorted(used - samples)}"
    # And every family the service exposes is on the dashboard (nothing measured goes unseen).
    shown = {re.sub(r"_(bucket|count|sum|total)$", "", name) for name in used}
    measured = {name for name in families if not name.endswith("_created")}  # the parser's own family
    assert measured <= shown, sorted(measured - shown)


def test_the_documented_metrics_table_matches_the_exposition() -> None:
    samples, _ = _exposed()
    table = (REPO / "docs" / "distribution.md").read_text().split("## Metrics and traces", 1)[1]
    documented = set(_NAME.findall(table.split("OpenTelemetry", 1)[0]))
    counters_and_gauges = {name for name in documented if not name.endswith("_seconds")}
    histograms = {name for name in documented if name.endswith("_seconds")}
    assert counters_and_gauges <= samples, sorted(counters_and_gauges - samples)
    assert {f"{name}_bucket" for name in histograms} <= samples
