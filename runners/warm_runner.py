"""Beam's side of :mod:`runners.warm`: an environment whose workers are the warm processes.

Kept apart so that the CLI can start the processes (``runners.warm``) before anything
imports Beam. Three small pieces, each through Beam's own registration points: the
environment (its proto form is the pool's id), the worker handler Beam's FnApiRunner
creates per worker for it, and the runner that keeps that environment for a run whose
options say ``multi_processing`` (FnApiRunner would put its own subprocess environment in
its place).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from apache_beam.options.pipeline_options import DirectOptions, StandardOptions
from apache_beam.portability.api import endpoints_pb2
from apache_beam.runners.portability.fn_api_runner import FnApiRunner, fn_runner, worker_handlers
from apache_beam.transforms import environments
from google.protobuf import json_format, text_format

from runners.options import OFFLINE_RUNNER
from runners.warm import WARM_URN, WorkerProcess, pool, pool_of

__all__ = ["WarmProcessEnvironment", "WarmRunner", "WarmWorkerHandler", "runner_for"]

_LOG = logging.getLogger(__name__)


@environments.Environment.register_urn(WARM_URN, bytes)
class WarmProcessEnvironment(environments.Environment):  # type: ignore[misc]
    """Workers are the warm processes of the pool this names."""

    def __init__(
        self,
        pool_id: str,
        capabilities: Iterable[str] = (),
        artifacts: Iterable[Any] = (),
        resource_hints: Any = None,
    ) -> None:
        super().__init__(capabilities or environments.python_sdk_capabilities(), artifacts, resource_hints)
        self.pool_id = pool_id

    def to_runner_api_parameter(self, context: Any) -> tuple[str, bytes]:
        return WARM_URN, self.pool_id.encode()

    @staticmethod
    def from_runner_api_parameter(
        payload: bytes,
        capabilities: Iterable[str],
        artifacts: Iterable[Any],
        resource_hints: Any,
        context: Any,
    ) -> WarmProcessEnvironment:
        return WarmProcessEnvironment(payload.decode(), capabilities, artifacts, resource_hints)


@worker_handlers.WorkerHandler.register_environment(WARM_URN, bytes)
class WarmWorkerHandler(worker_handlers.GrpcWorkerHandler):  # type: ignore[misc]
    """Beam's subprocess worker handler, with the process taken from the pool instead of spawned."""

    def __init__(self, payload: bytes, state: Any, provision_info: Any, grpc_server: Any) -> None:
        super().__init__(state, provision_info, grpc_server)
        self._pool = pool(payload.decode())
        self._process: WorkerProcess | None = None

    def start_worker(self) -> None:
        descriptor = endpoints_pb2.ApiServiceDescriptor(url=self.control_address)
        variables = {
            "CONTROL_API_SERVICE_DESCRIPTOR": text_format.MessageToString(descriptor),
            "PIPELINE_OPTIONS": json_format.MessageToJson(
                self.provision_info.provision_info.pipeline_options
            ),
        }
        if self.worker_id:
            variables["WORKER_ID"] = self.worker_id
        self._process = self._pool.attach(variables)
        _LOG.debug("worker %s: process %d, started with the command", self.worker_id, self._process.pid)

    def stop_worker(self) -> None:
        # As Beam's own: the harness returns once the runner closes its control stream.
        if self._process is not None and self._process.wait() != 0:
            raise RuntimeError(f"worker process exited with return code {self._process.returncode}")


class _WorkerCountWarning(logging.Filter):
    """FnApiRunner warns that N workers want a multi-process mode: ours is one, by environment."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "direct_num_workers is not equal to 1" not in record.getMessage()


class WarmRunner(FnApiRunner):  # type: ignore[misc]
    """FnApiRunner that keeps its default environment (the warm pool) under ``multi_processing``."""

    def run_pipeline(self, pipeline: Any, options: Any) -> Any:
        direct = options.view_as(DirectOptions)
        mode, direct.direct_running_mode = direct.direct_running_mode, "in_memory"
        quiet = _WorkerCountWarning()
        logger = logging.getLogger(fn_runner.__name__)
        logger.addFilter(quiet)
        try:
            return super().run_pipeline(pipeline, options)
        finally:
            logger.removeFilter(quiet)
            direct.direct_running_mode = mode


def runner_for(options: Any) -> WarmRunner | None:
    """An FnApiRunner on this command's warm processes, if it started as many as ``options`` ask.

    None otherwise: the pipeline then takes the runner its options name, unchanged.
    """
    direct = options.view_as(DirectOptions)
    if (
        options.view_as(StandardOptions).runner != OFFLINE_RUNNER
        or direct.direct_running_mode != "multi_processing"
    ):
        return None
    warm = pool_of(direct.direct_num_workers)
    return None if warm is None else WarmRunner(default_environment=WarmProcessEnvironment(warm.id))
