"""Runner flags: the offline default, DirectRunner without Prism, and ``--workers``."""

from __future__ import annotations

import pytest

from runners.options import DASK_RUNNER, OFFLINE_RUNNER, runner_args, worker_args
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
