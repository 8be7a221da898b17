"""How a failed export reports itself: a failed run is a PipelineError, a bug is a bug.

Either way nothing that looks like a bundle is left behind.
"""

from __future__ import annotations

import os
from pathlib import Path

import apache_beam as beam
import pytest

import pipelines.export as export
from pipelines.registry import get_profile
from stella.bundle.request import ExportRequest, new_request
from stella.cli import main
from stella.errors import PipelineError
from stella.ledger.ingest import ingest_paths
from stella.ledger.store import LedgerStore

T0 = "2026-11-27T00:00:00Z"


@pytest.fixture
def request_(tmp_path: Path, shared_data: Path) -> ExportRequest:
    store = LedgerStore(str(tmp_path / "ledger"))
    ingest_paths(store, "acme", [str(shared_data / "vex")], ingested_at=T0)
    profile = get_profile("json:raw")
    return new_request(tenant="acme", profile=profile, ledger_root=store.root, out_dir=str(tmp_path / "out"))


def _buggy(pipeline: beam.Pipeline, request: ExportRequest, staging: str) -> beam.PCollection:
    return pipeline | beam.Create([1]) | "Bug" >> beam.Map(lambda n: n + "1")


def test_a_bug_in_a_step_surfaces_as_itself(
    request_: ExportRequest, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(export, "builder_for", lambda name: _buggy)
    with pytest.raises(TypeError, match="unsupported operand"):
        export.run_export(request_)
    assert os.listdir(request_.out_dir) == []  # the staging folder is gone
    argv = ["export", "run", "--tenant", "acme", "--profile", "json:raw"]
    argv += ["--ledger", request_.ledger_root, "--out", request_.out_dir]
    assert main(argv) == 1
    quiet = capsys.readouterr().err
    assert "error [ERR_EXPORT_INTERNAL]: TypeError" in quiet and "Traceback" not in quiet
    assert main(["-v", *argv]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_a_failed_run_is_a_pipeline_error(request_: ExportRequest) -> None:
    for segment in request_.segments:  # storage fails under the running pipeline
        os.remove(segment.path)
    with pytest.raises(PipelineError, match="No such file or directory") as caught:
        export.run_export(request_)
    assert caught.value.exit_code == 12
    assert os.listdir(request_.out_dir) == []
