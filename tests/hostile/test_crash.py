"""Crashes: SIGKILL during quarantine-heavy ingests, and the write order a power cut relies on.

A killed ingest may leave temp files, never a torn file under a final name; the next run
removes the temp files (their writer's pid is gone) and ends in exactly the state an
uninterrupted run reaches. The order temp write -> fsync(temp) -> rename -> fsync(folder)
(sidecars before the segment, quarantine bytes before their reason) is observed with
strace on the real process.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import REPO, VENV_BIN, require_tool

pytestmark = pytest.mark.slow

# Quarantine entries present (cumulative: each run resumes the last) before each SIGKILL.
KILL_AFTER = (0, 5, 40, 120, 250)


def _inputs(root: Path) -> Path:
    """400 distinct bad documents (largish, so writes take time) and 200 good ones."""
    folder = root / "in"
    folder.mkdir()
    for n in range(400):
        (folder / f"bad-{n:03d}.json").write_bytes(b'{"id": "X-%d", "pad": "' % n + b"z" * 40_000 + b'"')
    good = b'{"id": "GHSA-%d", "modified": "2026-01-01T00:00:00Z", "affected": []}'
    (folder / "good.jsonl").write_bytes(b"\n".join(good % n for n in range(200)) + b"\n")
    return folder


def _command(home: Path, folder: Path) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "STELLA_HOME": str(home), "SOURCE_DATE_EPOCH": "1790000000"}
    return [str(VENV_BIN / "stella"), "ledger", "ingest", "--tenant", "acme", "--json", str(folder)], env


def _state(home: Path) -> dict[str, object]:
    """What the tenant's folders hold, checking every invariant a crash must not break."""
    tenant = home / "ledger" / "tenants" / "acme"
    quarantine, segments = tenant / "quarantine", tenant / "segments"
    finals = (
        sorted(p.name for p in quarantine.glob("*") if ".tmp-" not in p.name) if quarantine.is_dir() else []
    )
    for name in finals:
        path = quarantine / name
        if name.endswith(".json"):
            json.loads(path.read_bytes())  # never torn
            assert (quarantine / (name[:-5] + ".bin")).is_file(), f"reason without bytes: {name}"
        else:
            assert hashlib.sha256(path.read_bytes()).hexdigest() == name[:-4], f"torn bytes: {name}"
    avro = sorted(segments.glob("*.avro")) if segments.is_dir() else []
    for segment in avro:
        meta = json.loads(segment.with_suffix(".meta.json").read_bytes())
        assert meta["bytes"] == segment.stat().st_size
        assert segment.with_suffix(".digests.zst").is_file()
    temps = sorted(p.name for p in tenant.rglob("*") if ".tmp-" in p.name) if tenant.is_dir() else []
    return {
        "quarantine": [n for n in finals if n.endswith(".json")],
        "segments": [p.name for p in avro],
        "temps": temps,
    }


def test_sigkill_during_quarantine_writes_loses_nothing(tmp_path: Path) -> None:
    folder = _inputs(tmp_path)
    reference_home = tmp_path / "reference"
    command, env = _command(reference_home, folder)
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=600)
    reference = _state(reference_home)
    assert len(reference["quarantine"]) == 400 and reference["temps"] == []  # type: ignore[arg-type]

    home = tmp_path / "killed"
    command, env = _command(home, folder)
    killed = 0
    for threshold in KILL_AFTER:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        quarantine = home / "ledger" / "tenants" / "acme" / "quarantine"
        deadline = time.monotonic() + 300
        while process.poll() is None and time.monotonic() < deadline:
            if len(list(quarantine.glob("*.json"))) >= threshold:
                break
            time.sleep(0.002)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            killed += 1
        process.wait()
        _state(home)  # invariants hold after every kill
    print(f"SIGKILLs injected: {killed}")
    assert killed >= 3
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True, timeout=600)
    final = _state(home)
    assert final["quarantine"] == reference["quarantine"]
    assert final["segments"] == reference["segments"]
    assert final["temps"] == []  # leftovers of the killed runs were cleaned
    report = json.loads(done.stdout)
    assert report["added"] + report["duplicates"] == 200


_SYSCALL = re.compile(r"^(?:\d+\s+)?(\w+)\((.*)\)\s+=\s+(-?\d+)")
_FD_PATH = re.compile(r"^\d+<(.*)>$")


def test_power_loss_ordering_is_observed_with_strace(tmp_path: Path) -> None:
    strace = require_tool("strace")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "bad.json").write_text("not json")
    (folder / "good.json").write_text('{"id": "GHSA-1", "modified": "2026-01-01T00:00:00Z", "affected": []}')
    home = tmp_path / "home"
    command, env = _command(home, folder)
    log = tmp_path / "strace.log"
    subprocess.run(
        [strace, "-f", "-y", "-qq", "-e", "signal=none", "-e", "trace=fsync,fdatasync,rename,renameat,renameat2",
         "-o", str(log), *command],
        env=env, check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    events: list[tuple[str, str, str]] = []  # (call, first path, second path)
    for line in log.read_text().splitlines():
        match = _SYSCALL.match(line)
        if match is None or match.group(3) != "0":
            continue
        call, args = match.group(1), match.group(2)
        if call in ("fsync", "fdatasync"):
            fd = _FD_PATH.match(args)
            events.append(("fsync", fd.group(1) if fd else args, ""))
        else:
            paths = re.findall(r'"([^"]*)"', args)
            events.append(("rename", paths[0], paths[-1]))
    tenant = str(home / "ledger" / "tenants" / "acme")
    renames = [
        (i, src, dst)
        for i, (call, src, dst) in enumerate(events)
        if call == "rename" and dst.startswith(tenant)
    ]
    finals = {Path(dst).name for _i, _src, dst in renames}
    assert any(n.endswith(".avro") for n in finals) and any(n.endswith(".bin") for n in finals)
    assert {n.rsplit(".", 1)[-1] for n in finals} >= {"avro", "json", "zst", "bin"}
    order: dict[str, int] = {}
    for index, source, destination in renames:
        before = [call for call, path, _ in events[:index] if call == "fsync" and path == source]
        assert before, f"{destination}: renamed without an fsync of its temp file"
        after = [
            call
            for call, path, _ in events[index + 1 :]
            if call == "fsync" and path == str(Path(destination).parent)
        ]
        assert after, f"{destination}: its folder was not fsynced after the rename"
        order[Path(destination).name] = index
    for name, index in order.items():
        if name.endswith(".avro"):
            stem = name[: -len(".avro")]
            assert order[stem + ".meta.json"] < index and order[stem + ".digests.zst"] < index
        if name.endswith(".json") and name[:-5] + ".bin" in order:
            assert order[name[:-5] + ".bin"] < index
