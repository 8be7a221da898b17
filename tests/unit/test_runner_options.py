"""Runner flags: the offline default, DirectRunner without Prism, and ``--workers``."""

from __future__ import annotations

import os

import pytest

from runners.options import (
    DASK_RUNNER,
    OFFLINE_RUNNER,
    pipeline_options,
    runner_args,
    worker_args,
    worker_count,
)
from stella.errors import UsageError


def test_default_and_aliases() -> None:
    assert runner_args([]) == [f"--runner={OFFLINE_RUNNER}"]
    assert runner_args(["--runner", "DirectRunner"]) == [f"--runner={OFFLINE_RUNNER}"]
    assert runner_args(["--runner=dask", "--x=1"]) == [f"--runner={DASK_RUNNER}", "--x=1"]
    prism = ["--runner=DirectRunner", "--prism_location=/opt/prism"]
    assert runner_args(prism) == prism
    with pytest.raises(UsageError):
        runner_args(["--runner"])


def test_workers_map_to_the_embedded_runners_multiprocessing_mode() -> None:
    assert worker_args(None, ["--a=1"]) == ["--a=1"]
    assert worker_args(1, []) == []
    assert worker_args(3, ["--a=1"]) == [
        "--a=1",
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=3",
    ]
    assert worker_args(2, ["--runner=FnApiRunner"])[-1] == "--direct_num_workers=2"
    for workers, beam in ((0, []), (2, ["--runner=dask"]), (2, ["--direct_num_workers=4"])):
        with pytest.raises(UsageError):
            worker_args(workers, beam)


def test_worker_count_is_what_workers_set_on_the_embedded_runner_only() -> None:
    assert worker_count(pipeline_options([])) == 1
    assert worker_count(pipeline_options(worker_args(2, []))) == 2
    assert worker_count(pipeline_options(worker_args(3, ["--runner=FnApiRunner"]))) == 3
    assert worker_count(pipeline_options(["--direct_num_workers=0"])) == (os.cpu_count() or 1)  # Beam's rule
    dask = ["--runner=dask", "--dask_client_address=127.0.0.1:1", "--direct_num_workers=4"]
    assert worker_count(pipeline_options(dask)) == 1  # Dask sizes its own workers
