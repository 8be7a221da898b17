"""Offline by default: an export attempts no outbound connection at all.

Beam 2.77's DirectRunner tries to download Prism from GitHub before falling back. The
test runs the real CLI with an audit hook (PEP 578) that records, and refuses, every
name lookup, socket connect and urllib request to anything but loopback; the run must
succeed with the record empty, and Beam's Prism cache folder must not even be created.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import VENV_BIN, run_args

T0 = "2026-11-27T00:00:00Z"

_HOOK = textwrap.dedent(
    """
    import os, sys
    _LOG = os.environ["STELLA_EGRESS_LOG"]
    _LOCAL = ("127.0.0.1", "::1", "localhost", "", None)

    def _host(event, args):
        if event == "socket.getaddrinfo":
            return args[0]
        if event == "socket.connect":
            address = args[1]
            return address[0] if isinstance(address, tuple) else None  # unix sockets are local
        if event == "urllib.Request":
            from urllib.parse import urlsplit
            return urlsplit(args[0]).hostname
        return None

    def _hook(event, args):
        if event not in ("socket.getaddrinfo", "socket.connect", "urllib.Request"):
            return
        host = _host(event, args)
        if isinstance(host, bytes):
            host = host.decode()
        if host in _LOCAL:
            return
        with open(_LOG, "a") as log:
            log.write(f"{event} {host}\\n")
        raise PermissionError(f"egress to {host} blocked by test")

    sys.addaudithook(_hook)
    """
)


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir(exist_ok=True)
    (hook_dir / "sitecustomize.py").write_text(_HOOK)
    env = {
        **os.environ,
        "PYTHONPATH": str(hook_dir),
        "HOME": str(tmp_path / "home"),
        "STELLA_EGRESS_LOG": str(tmp_path / "egress.log"),
    }
    (tmp_path / "home").mkdir(exist_ok=True)
    return subprocess.run(
        [str(VENV_BIN / "stella"), *args], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.mark.parametrize(
    "runner_args", [[], ["--runner=DirectRunner"]], ids=["default", "explicit-DirectRunner"]
)
def test_export_makes_no_outbound_connection(
    tmp_path: Path, shared_data: Path, runner_args: list[str]
) -> None:
    ledger = tmp_path / "ledger"
    ingest = _run(
        tmp_path,
        "ledger",
        "ingest",
        "--tenant",
        "acme",
        "--ledger",
        str(ledger),
        "--ingested-at",
        T0,
        str(shared_data / "advisories" / "osv-psf.jsonl.zst"),
    )
    assert ingest.returncode == 0, ingest.stderr
    # the hook really is active in the child: prove it blocks a lookup
    probe = subprocess.run(
        [sys.executable, "-c", "import socket; socket.getaddrinfo('github.com', 443)"],
        env={
            **os.environ,
            "PYTHONPATH": str(tmp_path / "hook"),
            "STELLA_EGRESS_LOG": str(tmp_path / "probe.log"),
        },
        capture_output=True,
        text=True,
    )
    assert probe.returncode != 0 and "blocked by test" in probe.stderr
    result = _run(
        tmp_path,
        *run_args(ledger, tmp_path / "out"),
        "--json",
        *runner_args,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["counts"] == {"advisory": 85}
    log = tmp_path / "egress.log"
    assert not log.exists(), f"outbound attempts: {log.read_text()}"
    assert not (tmp_path / "home" / ".apache_beam" / "cache" / "prism").exists()
