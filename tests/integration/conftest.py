"""Fixtures for tests that drive real components on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.services.registry import Registry, run_registry
from tests.support import require_tool


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """One Debian ``docker-registry`` for the session; tests use distinct repository names."""
    binary = require_tool("docker-registry")
    with run_registry(binary, tmp_path_factory.mktemp("registry")) as registry:
        yield registry


# Signed / encrypted bundle fixtures (issue 4) live in their own module.
# Mirror histories (issue 8): a ledger over three moments and its signed mirror bundles.
from tests.integration.mirror_fixtures import *  # noqa: E402, F403
from tests.integration.signed_fixtures import *  # noqa: E402, F403
