"""Runner selection (offline default, pass-through for Dask, Flink and Dataflow)."""

from runners.options import DASK_RUNNER, OFFLINE_RUNNER, pipeline_options, runner_args

__all__ = ["DASK_RUNNER", "OFFLINE_RUNNER", "pipeline_options", "runner_args"]
