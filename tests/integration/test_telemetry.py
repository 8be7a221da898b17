"""Traces of CLI and service runs: the SDK's in-memory exporter, and the real OTLP/HTTP exporter to a collector."""

from __future__ import annotations

import gzip
import http.server
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from stella.cli import main
from stella.telemetry.tracing import SPAN_NAMES, use_provider
from tests.support import ingest, preserved_logging, stella_cli


@pytest.fixture()
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    previous = use_provider(provider)
    try:
        yield exporter
    finally:
        use_provider(previous)
        provider.shutdown()


def assert_one_run_tree(finished: tuple[ReadableSpan, ...], publishes: int) -> None:
    """export.run is the root; every other span is its direct child, in its trace."""
    names = Counter(span.name for span in finished)
    assert set(names) == set(SPAN_NAMES), names
    assert names["export.run"] == 1 and names["export.plan"] == 1 and names["export.sign"] == 1
    assert names["export.publish"] == publishes
    (root,) = [span for span in finished if span.name == "export.run"]
    assert root.parent is None
    for span in finished:
        assert span.context.trace_id == root.context.trace_id, span.name
        if span is not root:
            assert span.parent is not None and span.parent.span_id == root.context.span_id, span.name
            assert root.start_time <= span.start_time and span.end_time <= root.end_time, span.name


def test_a_cli_run_is_one_trace_with_every_stage(
    spans: InMemorySpanExporter,
    shared_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ledger = tmp_path / "ledger"
    ingest(ledger, shared_data / "vex")
    monkeypatch.setenv("STELLA_LOG_FORMAT", "json")
    with preserved_logging():
        code = main(
            ["export", "run", "--tenant", "acme", "--profile", "json:raw", "--ledger", str(ledger),
             "--out", str(tmp_path / "out"), "--target", f"file://{tmp_path / 'a'}",
             "--target", f"file://{tmp_path / 'b'}?keep=1", "--json"]
        )  # fmt: skip
    logged = capsys.readouterr().err
    assert code == 0, logged
    finished = spans.get_finished_spans()
    assert_one_run_tree(finished, publishes=2)
    (root,) = [span for span in finished if span.name == "export.run"]
    trace_hex = format(root.context.trace_id, "032x")
    lines = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    published = [line for line in lines if line.get("event") == "publish"]
    assert len(published) == 2  # one structured line per target, joined to the trace
    assert all(line["traceId"] == trace_hex == line["correlationId"] for line in published)
    publishes = sorted(s.attributes["stella.target"] for s in finished if s.name == "export.publish")  # type: ignore[index]
    assert publishes == sorted([f"file://{tmp_path / 'a'}", f"file://{tmp_path / 'b'}"])
    reads = [s for s in finished if s.name == "export.read"]
    assert sum(s.attributes["stella.records"] for s in reads) == 43  # type: ignore[index,misc]


def test_tracing_is_off_by_default(shared_data: Path, tmp_path: Path) -> None:
    """Without a provider the API's no-op tracer is used: no span is recorded anywhere."""
    from opentelemetry import trace

    from stella.telemetry.tracing import span, trace_id

    with span("export.run") as current:
        assert not current.get_span_context().is_valid
        assert trace_id() is None
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def test_a_service_run_is_one_trace_with_every_stage(
    spans: InMemorySpanExporter, shared_data: Path, tmp_path: Path
) -> None:
    """A worker's run body (what the forked run process executes), in this process so the spans are seen."""
    from stella.service.config import ServiceConfig
    from stella.service.store import open_store
    from stella.service.worker import _export

    ledger = tmp_path / "ledger"
    ingest(ledger, shared_data / "vex")
    config = ServiceConfig.from_env({"STELLA_HOME": str(tmp_path / "home"), "STELLA_LEDGER": str(ledger)})
    store = open_store(config.store_url)
    params = {"selectors": ["kind=vex"], "options": {}, "encryptTo": [], "sign": False}
    store.create_run(
        tenant="acme",
        profile="json:raw",
        params={**params, "targets": [f"file://{tmp_path / 'share'}"]},
        idempotency_key=None,
        max_active=4,
        retry_after=5,
    )
    lease = store.claim_run("tracing-test", 30.0)
    assert lease is not None
    result, _ = _export(config, store, lease.run, "tracing-test")
    assert result["targets"][0]["status"] == "published"
    assert_one_run_tree(spans.get_finished_spans(), publishes=1)


class OtlpReceiver:
    """A tiny OTLP/HTTP collector on 127.0.0.1: decodes each ExportTraceServiceRequest it is sent."""

    def __init__(self) -> None:
        received = self.requests = list[tuple[str, str, ExportTraceServiceRequest]]()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                received.append((self.path, self.headers.get("Content-Type", ""), request))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver() -> Iterator[OtlpReceiver]:
    running = OtlpReceiver()
    yield running
    running.close()


def test_a_cli_run_exports_its_trace_over_otlp_to_a_collector(
    receiver: OtlpReceiver, shared_data: Path, tmp_path: Path
) -> None:
    """The real OTLP/HTTP exporter in a separate CLI process: one parented trace reaches the collector."""
    ledger = tmp_path / "ledger"
    ingest(ledger, shared_data / "vex")
    env = {"STELLA_OTEL_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
           "STELLA_LOG_FORMAT": "json"}  # fmt: skip
    ran = stella_cli(
        "export", "run", "--tenant", "acme", "--profile", "json:raw", "--ledger", str(ledger),
        "--out", str(tmp_path / "out"), "--target", f"file://{tmp_path / 'a'}",
        "--target", f"file://{tmp_path / 'b'}", "--json", env=env, check=True,
    )  # fmt: skip
    assert receiver.requests, "the exporter sent nothing"
    assert {(path, kind) for path, kind, _ in receiver.requests} == {("/v1/traces", "application/x-protobuf")}
    spans = []
    for _, _, request in receiver.requests:
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            assert resource["service.name"] == "stella-export"
            spans += [s for scope in resource_spans.scope_spans for s in scope.spans]
    names = Counter(s.name for s in spans)
    assert set(names) == set(SPAN_NAMES), names
    assert (names["export.run"], names["export.plan"], names["export.sign"], names["export.publish"]) == (
        1,
        1,
        1,
        2,
    )
    (root,) = [s for s in spans if s.name == "export.run"]
    assert root.parent_span_id == b""
    for child in spans:
        assert child.trace_id == root.trace_id, child.name
        if child is not root:
            assert child.parent_span_id == root.span_id, child.name
            assert root.start_time_unix_nano <= child.start_time_unix_nano, child.name
            assert child.end_time_unix_nano <= root.end_time_unix_nano, child.name
    targets = sorted(
        a.value.string_value
        for s in spans
        if s.name == "export.publish"
        for a in s.attributes
        if a.key == "stella.target"
    )
    assert targets == [f"file://{tmp_path / 'a'}", f"file://{tmp_path / 'b'}"]
    logged = [json.loads(line) for line in ran.stderr.splitlines() if line.startswith("{")]
    assert {line["traceId"] for line in logged if line.get("event") == "publish"} == {root.trace_id.hex()}


def test_an_otlp_collector_off_the_allowlist_is_refused_before_the_run(
    shared_data: Path, tmp_path: Path
) -> None:
    """A collector is egress like any target: exit 8 and not one connection, until it is allowed."""
    from tests.integration.test_distribution import Listener

    denied = Listener()
    env = {
        "STELLA_OTEL_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{denied.host}:{denied.port}",
    }
    ran = stella_cli("export", "run", "--tenant", "acme", "--profile", "json:raw",
                     "--ledger", str(tmp_path / "ledger"), "--out", str(tmp_path / "out"), env=env)  # fmt: skip
    assert ran.returncode == 8 and "ERR_EXPORT_EGRESS_DENIED" in ran.stderr and "127.0.0.2" in ran.stderr, (
        ran.stderr
    )
    assert denied.close() == [] and not (tmp_path / "out").exists()


def _received_spans(receiver: OtlpReceiver) -> list[Span]:
    return [
        span
        for _, _, request in list(receiver.requests)
        for resource_spans in request.resource_spans
        for scope in resource_spans.scope_spans
        for span in scope.spans
    ]


def test_a_service_run_exports_its_trace_over_otlp_from_the_run_process(
    receiver: OtlpReceiver, shared_data: Path, tmp_path: Path
) -> None:
    """``stella serve`` runs each export in a forked process: its batched spans must still leave it."""
    from tests.service.support import start_service

    ledger = tmp_path / "ledger"
    ingest(ledger, shared_data / "vex")
    env = {"STELLA_OTEL_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
    with start_service(tmp_path / "home", ledger, f"sqlite:///{tmp_path / 'runs.db'}", env=env) as service:
        token = service.token("acme")
        response = service.submit(token, {"profile": "json:raw", "targets": [f"file://{tmp_path / 'share'}"]})
        assert response.status_code == 202, response.text
        run = service.wait(token, response.json()["runId"])
        assert run["status"] == "succeeded", run
        deadline = time.monotonic() + 30
        while (
            not any(s.name == "export.run" for s in _received_spans(receiver)) and time.monotonic() < deadline
        ):
            time.sleep(0.2)
    spans = _received_spans(receiver)
    names = Counter(s.name for s in spans)
    assert set(names) == set(SPAN_NAMES) and names["export.run"] == names["export.publish"] == 1, names
    (root,) = [s for s in spans if s.name == "export.run"]
    assert all(s.trace_id == root.trace_id and (s is root or s.parent_span_id == root.span_id) for s in spans)
