"""CLI parity: ``stella --server URL --tenant T export …`` against a running service.

Through the console script, as a user would: run (follows events, downloads, verifies),
status, list, profiles, verify, and a download that resumes a cut-off ``.part`` file.
Exit codes are the local ones.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from tests.service.support import Service
from tests.support import check_cli_json, stella_cli


def _cli(service: Service, *args: str, token: str | None = None) -> Any:
    env = {"STELLA_TOKEN": token or service.token("acme"), "STELLA_SERVER": "", "STELLA_TENANT": ""}
    return stella_cli("--server", service.url, "--tenant", "acme", "export", *args, env=env)


@pytest.mark.slow
@pytest.mark.parametrize("service", ["sqlite"], indirect=True)
def test_run_status_list_profiles_verify_through_the_server(service: Service, tmp_path: Path) -> None:
    ran = _cli(
        service, "run", "--profile", "json:raw", "--selector", "kind=vex", "--out", str(tmp_path), "--json"
    )
    assert ran.returncode == 0, ran.stderr
    summary = check_cli_json(ran.stdout)
    archive = Path(summary["bundle"])
    assert archive.parent == tmp_path and summary["verified"] is True
    assert "sha256:" + hashlib.sha256(archive.read_bytes()).hexdigest() == summary["digest"]
    assert "read: " in ran.stderr  # progress from the event stream (plain lines: not a terminal)

    status = _cli(service, "status", summary["runId"], "--json")
    assert status.returncode == 0 and check_cli_json(status.stdout)["run"]["status"] == "succeeded"
    listed = _cli(service, "list", "--status", "succeeded", "--json")
    assert summary["runId"] in [item["runId"] for item in check_cli_json(listed.stdout)["runs"]]
    profiles = _cli(service, "profiles", "--json")
    assert "json:raw" in [item["name"] for item in check_cli_json(profiles.stdout)["builtin"]]
    verified = _cli(service, "verify", summary["runId"])
    assert verified.returncode == 0 and verified.stdout.startswith("OK")

    # exit codes are the local ones: usage 2, not found 6, unauthenticated 15, forbidden 11
    assert _cli(service, "run", "--profile", "json:nope").returncode == 2
    assert _cli(service, "status", "run-" + "0" * 32).returncode == 6
    assert _cli(service, "status", summary["runId"], token="not-a-token").returncode == 15
    read_only = service.token("acme", scopes=["export:read"])
    refused = _cli(service, "run", "--profile", "json:raw", token=read_only)
    assert refused.returncode == 11 and "ERR_EXPORT_FORBIDDEN" in refused.stderr


@pytest.mark.slow
@pytest.mark.parametrize("service", ["sqlite"], indirect=True)
def test_download_resumes_a_cut_file_and_verifies(
    service: Service, finished_run: dict[str, Any], tmp_path: Path
) -> None:
    with service.client(service.token("acme")) as client:
        whole = client.get(f"/api/export/runs/{finished_run['runId']}/download").content
    name = finished_run["result"]["archive"]
    (tmp_path / f"{name}.part").write_bytes(whole[: len(whole) // 2])  # what an interrupted download leaves
    before = service.log.read_text().count('"status": 206')
    fetched = _cli(service, "download", finished_run["runId"], "--out", str(tmp_path), "--json")
    assert fetched.returncode == 0, fetched.stderr
    assert (tmp_path / name).read_bytes() == whole and not (tmp_path / f"{name}.part").exists()
    assert check_cli_json(fetched.stdout)["ok"] is True
    assert service.log.read_text().count('"status": 206') == before + 1  # only the rest was fetched

    garbage = tmp_path / "again"
    garbage.mkdir()
    (garbage / f"{name}.part").write_bytes(b"\0" * (len(whole) // 2))  # a .part of some other file
    again = _cli(service, "download", finished_run["runId"], "--out", str(garbage))
    assert again.returncode == 0, again.stderr
    assert (garbage / name).read_bytes() == whole
