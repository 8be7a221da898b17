"""CLI parity: ``stella --server URL --tenant T export …`` against a running service.

Through the console script, as a user would: run (follows events, downloads, verifies),
status, list, profiles, verify, and a download that resumes a cut-off ``.part`` file.
Exit codes are the local ones.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from tests.service.support import Service
from tests.support import REPO, check_cli_json, stella_cli, stella_in_process


def _cli(service: Service, *args: str, token: str | None = None, console: bool = False) -> Any:
    """``stella --server URL --tenant acme export ARGS``: in this process unless ``console``
    (one call per test goes through the console script; the rest save an interpreter start)."""
    env = {"STELLA_TOKEN": token or service.token("acme"), "STELLA_SERVER": "", "STELLA_TENANT": ""}
    run = stella_cli if console else stella_in_process
    return run("--server", service.url, "--tenant", "acme", "export", *args, env=env)


@pytest.mark.slow
@pytest.mark.parametrize("service", ["sqlite"], indirect=True)
def test_run_status_list_profiles_verify_through_the_server(service: Service, tmp_path: Path) -> None:
    ran = _cli(
        service, "run", "--profile", "json:raw", "--selector", "kind=vex", "--out", str(tmp_path), "--json",
        console=True,
    )  # fmt: skip
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
    fetched = _cli(service, "download", finished_run["runId"], "--out", str(tmp_path), "--json", console=True)
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


def _in_process(monkeypatch: pytest.MonkeyPatch, *argv: str, token: str = "", server: str = "") -> int:
    """``stella ARGV`` in this process: the cheap way to compare many exit codes."""
    from stella.cli import main

    monkeypatch.setenv("STELLA_TOKEN", token)
    monkeypatch.setenv("STELLA_SERVER", server)
    return main(list(argv))


@pytest.mark.slow
@pytest.mark.parametrize("service", ["sqlite"], indirect=True)
def test_schedule_commands_through_the_server_match_the_local_ones(
    service: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    share = tmp_path / "share"
    create = ["create", "remote-nightly", "--tenant", "acme", "--profile", "json:raw"]
    create += ["--cron", "0 2 * * *", "--timezone", "Europe/Paris", "--selector", "kind=vex"]
    create += ["--target", f"file://{share}?keep=2"]
    made = _cli(service, "schedule", *create, "--json", console=True)
    assert made.returncode == 0, made.stderr
    remote_schedule = check_cli_json(made.stdout)["schedule"]
    store = f"sqlite:///{tmp_path / 'local.db'}"
    local = stella_in_process(
        "export", "schedule", *create, "--store", store, "--json", env={"STELLA_SERVER": ""}
    )
    assert local.returncode == 0, local.stderr
    local_schedule = check_cli_json(local.stdout)["schedule"]
    del remote_schedule["createdAt"], local_schedule["createdAt"]
    assert remote_schedule == local_schedule  # one envelope whether the store is local or behind the API

    def both(*args: str) -> tuple[int, int]:
        token = service.token("acme")
        remote = _in_process(monkeypatch, "--server", service.url, "export", "schedule", *args, token=token)
        return remote, _in_process(monkeypatch, "export", "schedule", *args, "--store", store)

    # Same exit codes for the same mistakes: a taken name 9, an unknown schedule 6, a bad cron 2.
    assert both(*create) == (9, 9)
    assert both("pause", "no-such-schedule", "--tenant", "acme") == (6, 6)
    assert both(*create[:2], "bad-cron", *create[3:7], "--cron", "61 * * * *") == (2, 2)
    # The server's allowlist, store and scheduler are its own: local-only flags are refused (2).
    remote = ["--server", service.url, "export", "schedule"]
    token = service.token("acme")
    assert _in_process(monkeypatch, *remote, *create, "--allow-host", "10.0.0.1", token=token) == 2
    assert _in_process(monkeypatch, *remote, "tick", token=token) == 2
    assert _in_process(monkeypatch, *remote, "run-now", "remote-nightly", "--ledger", "/x", token=token) == 2
    assert _in_process(monkeypatch, *remote, "list", "--store", store, token=token) == 2

    with service.client(service.token("globex")) as other:
        body = {"name": "globex-only", "profile": "json:raw", "cron": "0 3 * * *"}
        assert other.post("/api/export/schedules", json=body).status_code == 201
    listed = _cli(service, "schedule", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in check_cli_json(listed.stdout)["schedules"]}
    assert "globex-only" not in rows and rows["remote-nightly"]["tenant"] == "acme"
    assert rows["remote-nightly"]["nextSlot"].endswith(("T01:00:00Z", "T00:00:00Z"))

    read_only = service.token("acme", scopes=["export:read"])
    refused = _cli(service, "schedule", "pause", "remote-nightly", token=read_only)
    assert refused.returncode == 11 and "ERR_EXPORT_FORBIDDEN" in refused.stderr
    paused = _cli(service, "schedule", "pause", "remote-nightly", "--json")  # tenant from `stella --tenant`
    assert paused.returncode == 0 and check_cli_json(paused.stdout)["tenant"] == "acme"

    ran = _cli(service, "schedule", "run-now", "remote-nightly", "--json")  # paused schedules run now too
    assert ran.returncode == 0, ran.stderr
    (fire,) = check_cli_json(ran.stdout)["fires"]
    assert fire["status"] == "succeeded" and fire["result"]["runStatus"] == "succeeded"
    (target,) = fire["result"]["targets"]
    assert target["status"] == "published" and Path(target["location"]).parent == share
    shown = _cli(service, "schedule", "list")
    assert "remote-nightly" in shown.stdout and "paused" in shown.stdout and "succeeded" in shown.stdout

    assert _cli(service, "schedule", "delete", "remote-nightly").returncode == 0
    assert _cli(service, "schedule", "delete", "remote-nightly").returncode == 6
    with service.client(service.token("globex")) as other:
        assert other.delete("/api/export/schedules/globex-only").status_code == 204


@pytest.mark.slow
@pytest.mark.parametrize("service", ["sqlite"], indirect=True)
def test_run_with_targets_through_the_server(
    service: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    share = tmp_path / "share"
    ran = _cli(
        service, "run", "--profile", "json:raw", "--selector", "kind=vex", "--out", str(tmp_path / "out"),
        "--target", f"file://{share}", "--json", console=True,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    summary = check_cli_json(ran.stdout)
    (target,) = summary["targets"]
    assert target["status"] == "published" and Path(target["location"]).parent == share
    assert (Path(target["location"]) / "export.json").is_file()
    # A denied host is refused by the server before anything is queued: exit 8, as locally.
    denied = _cli(service, "run", "--profile", "json:raw", "--target", "oci://127.0.0.2:1/x/y:1")
    assert denied.returncode == 8 and "ERR_EXPORT_EGRESS_DENIED" in denied.stderr
    from stella.cli import main

    monkeypatch.setenv("STELLA_TOKEN", service.token("acme"))
    run = ["--server", service.url, "export", "run", "--profile", "json:raw", "--target", f"file://{share}"]
    assert main([*run, "--allow-host", "127.0.0.2"]) == 2  # the server's allowlist decides


@pytest.mark.slow
@pytest.mark.parametrize("service", ["sqlite"], indirect=True)
def test_the_documented_remote_schedule_commands_run(
    service: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/schedules.md's block for the service, executed as written (server and folders pointed here)."""
    from stella.cli import main

    text = (REPO / "docs" / "schedules.md").read_text().split("**CLI against a server.**", 1)[1]
    block = text.split("```sh\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    lines = [line.split("  #", 1)[0] for line in block.splitlines() if line.startswith("stella --server")]
    words = [shlex.split(line) for line in lines]
    assert [w[w.index("export") + 1 : w.index("export") + 3] for w in words] == [
        ["schedule", "create"],
        ["schedule", "list"],
        ["schedule", "run-now"],
        ["schedule", "pause"],
        ["schedule", "delete"],
        ["run", "--profile"],
    ]
    monkeypatch.chdir(tmp_path)
    token = block.split("export STELLA_TOKEN=$(", 1)[1].split(")", 1)[0]  # the scopes the docs ask for
    scopes = [word for word in shlex.split(token) if word.startswith("export:")]
    monkeypatch.setenv("STELLA_TOKEN", service.token("acme", scopes=scopes))
    for line in lines:
        line = re.sub(r"http://127\.0\.0\.1:\d+", service.url, line).replace("$PWD", str(tmp_path))
        line = line.replace("create nightly", "create documented").replace(" nightly", " documented")
        assert main(shlex.split(line)[1:]) == 0, line
    out = capsys.readouterr().out
    assert "succeeded  acme/documented manual:" in out  # run-now's slot, with its run's outcome
    published = list((tmp_path / "bundles" / "acme").iterdir())
    assert len(published) == 1 and (published[0] / "export.json").is_file()
    assert (tmp_path / "share").is_dir() and any((tmp_path / "share").iterdir())
    with service.client(service.token("acme")) as client:
        assert client.get("/api/export/schedules/documented").status_code == 404  # deleted
