"""Fixtures for tests that drive real components on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.services.gcs import gcs_emulator
from tests.services.registry import Registry, run_registry
from tests.support import preserved_logging, require_tool


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """One Debian ``docker-registry`` for the session; tests use distinct repository names."""
    binary = require_tool("docker-registry")
    with run_registry(binary, tmp_path_factory.mktemp("registry")) as registry:
        yield registry


@pytest.fixture(scope="session")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One in-memory GCS emulator for the session (its base URL); tests use distinct bucket names."""
    with gcs_emulator(tmp_path_factory.mktemp("gcs")) as url:
        yield url


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture()
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Ran]:
    """``stella`` in this process (the console script's own ``main``): no interpreter and Beam start per call."""
    from stella.cli import main

    monkeypatch.delenv("STELLA_EGRESS_ALLOWLIST", raising=False)

    def run(*args: str, env: dict[str, str] | None = None, check: bool = False) -> Ran:
        capsys.readouterr()
        with monkeypatch.context() as scoped, preserved_logging():
            for key, value in (env or {}).items():
                scoped.setenv(key, value)
            code = main(list(args))
        out, err = capsys.readouterr()
        if check:
            assert code == 0, f"stella {' '.join(args)} exited {code}:\n{out}\n{err}"
        return Ran(code, out, err)

    return run


# Signed / encrypted bundle fixtures (issue 4) live in their own module.
# Mirror histories (issue 8): a ledger over three moments and its signed mirror bundles.
from tests.integration.mirror_fixtures import *  # noqa: E402, F403
from tests.integration.signed_fixtures import *  # noqa: E402, F403
