"""Flink and Dataflow options: passed through unchanged, refused early when a run could not work."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import (
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PipelineOptions,
    PortableOptions,
    WorkerOptions,
)

from runners.options import runner_args
from runners.remote import check_remote_runner
from stella.errors import UsageError
from tests.support import REPO, run_args, stella_cli

FLINK = [
    "--runner=FlinkRunner",
    "--flink_master=127.0.0.1:8081",
    "--environment_type=EXTERNAL",
    "--environment_config=127.0.0.1:50000",
    "--parallelism=4",
]
DATAFLOW = [
    "--runner=DataflowRunner",
    "--project=acme-exports",
    "--region=europe-west1",
    "--temp_location=gs://acme-exports/tmp",
    "--sdk_container_image=europe-docker.pkg.dev/acme/stella/worker:0.1.0",
    "--num_workers=8",
]
GS = {"staging": "gs://acme-exports/staging", "ledger": "gs://acme-exports/ledger"}


def test_flink_and_dataflow_options_pass_through_unchanged() -> None:
    assert runner_args(FLINK) == FLINK
    assert runner_args(DATAFLOW) == DATAFLOW
    flink = PipelineOptions(runner_args(FLINK))
    assert flink.view_as(FlinkRunnerOptions).flink_master == "127.0.0.1:8081"
    assert flink.view_as(PortableOptions).environment_config == "127.0.0.1:50000"
    dataflow = PipelineOptions(runner_args(DATAFLOW))
    cloud = dataflow.view_as(GoogleCloudOptions)
    assert (cloud.project, cloud.region, cloud.temp_location) == (
        "acme-exports",
        "europe-west1",
        "gs://acme-exports/tmp",
    )
    assert dataflow.view_as(WorkerOptions).sdk_container_image.endswith("worker:0.1.0")
    check_remote_runner(FLINK, **GS)
    check_remote_runner(DATAFLOW, **GS)


def _without(args: list[str], prefix: str) -> list[str]:
    return [a for a in args if not a.startswith(prefix)]


@pytest.mark.parametrize(
    ("args", "place", "option"),
    [
        (_without(FLINK, "--flink_master"), GS, "--flink_master"),
        ([*FLINK, "--flink_master=[auto]"], GS, "--flink_master"),
        (_without(FLINK, "--environment_type"), GS, "--environment_type"),
        ([*_without(FLINK, "--environment_type"), "--environment_type=KUBERNETES"], GS, "--environment_type"),
        (_without(FLINK, "--environment_config"), GS, "--environment_config"),
        (FLINK, {"staging": None, "ledger": "/var/ledger"}, "--staging"),
        (_without(DATAFLOW, "--project"), GS, "--project"),
        (_without(DATAFLOW, "--region"), GS, "--region"),
        (_without(DATAFLOW, "--temp_location"), GS, "--temp_location"),
        ([*_without(DATAFLOW, "--temp_location"), "--temp_location=/tmp/x"], GS, "--temp_location"),
        (DATAFLOW, {**GS, "staging": None}, "--staging"),
        (DATAFLOW, {**GS, "staging": "/shared/staging"}, "--staging"),
        (DATAFLOW, {**GS, "ledger": "/home/me/.stella/ledger"}, "--ledger"),
        (_without(DATAFLOW, "--sdk_container_image"), GS, "--sdk_container_image"),
    ],
)
def test_a_launch_that_could_not_work_is_a_usage_error_naming_the_option(
    args: list[str], place: dict[str, str | None], option: str
) -> None:
    with pytest.raises(UsageError) as caught:
        check_remote_runner(args, staging=place["staging"], ledger=str(place["ledger"]))
    assert option in str(caught.value) and caught.value.details["option"] == option


def test_local_flink_workers_may_use_the_local_staging_default() -> None:
    loopback = [*_without(FLINK, "--environment_"), "--environment_type=LOOPBACK"]
    check_remote_runner(loopback, staging=None, ledger="/var/ledger")
    wheel = [*_without(DATAFLOW, "--sdk_container_image"), "--extra_package=dist/stella.whl"]
    check_remote_runner(wheel, **GS)


def test_the_cli_refuses_before_reading_the_ledger(tmp_path: Path) -> None:
    result = stella_cli(
        *run_args(tmp_path / "no-ledger-here", tmp_path / "out"),
        "--json",
        *_without(DATAFLOW, "--temp_location"),
    )
    assert result.returncode == 2 and not (tmp_path / "out").exists()
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "ERR_EXPORT_USAGE" and error["details"]["option"] == "--temp_location"


def _documented_runs() -> list[list[str]]:
    text = (REPO / "docs" / "runners.md").read_text().replace("\\\n", " ")
    return [
        shlex.split(line.strip())
        for line in text.splitlines()
        if line.strip().startswith("stella export run")
    ]


def test_the_documented_commands_pass_the_checks_and_go_through_unchanged() -> None:
    own = {"--tenant", "--profile", "--ledger", "--out", "--staging", "--workers"}
    runners = set()
    for tokens in _documented_runs():
        places = dict(zip(tokens, tokens[1:], strict=False))
        beam_args = [t for t in tokens if t.startswith("--") and t.split("=", 1)[0] not in own]
        check_remote_runner(beam_args, staging=places.get("--staging"), ledger=places.get("--ledger", "/l"))
        runner = next((a.split("=", 1)[1] for a in beam_args if a.startswith("--runner=")), "embedded")
        runners.add(runner)
        if runner in ("FlinkRunner", "DataflowRunner"):
            assert runner_args(beam_args) == beam_args
    assert runners == {"embedded", "dask", "FlinkRunner", "DataflowRunner"}


def test_the_service_refuses_the_same_options_at_start_up(tmp_path: Path) -> None:
    from stella.service.config import ServiceConfig

    base = {"home": tmp_path, "store_url": "sqlite:///x", "ledger_root": "gs://acme-exports/ledger"}
    ServiceConfig(**base, beam_args=tuple(DATAFLOW), staging=GS["staging"])
    with pytest.raises(UsageError) as caught:
        ServiceConfig(**base, beam_args=tuple(DATAFLOW))
    assert caught.value.details["option"] == "--staging"
