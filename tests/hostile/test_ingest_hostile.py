"""Hostile input to ``stella ledger ingest``: every unit ends added, duplicate or quarantined, visibly."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from backports import zstd

from stella.ledger.store import LedgerStore
from tests.hostile.conftest import Run, stella
from tests.support import REPO, VENV_BIN


def _ingest(capsys: pytest.CaptureFixture[str], *paths: Path, strict: bool = True) -> Run:
    flags = ["--strict"] if strict else []
    return stella(capsys, "ledger", "ingest", "--tenant", "acme", *flags, "--json", *map(str, paths))


def _quarantine(home: Path) -> dict[str, dict[str, object]]:
    folder = home / "ledger" / "tenants" / "acme" / "quarantine"
    return {p.stem: json.loads(p.read_bytes()) for p in sorted(folder.glob("*.json"))}


@pytest.mark.parametrize("kind", ["zst", "gz"])
def test_a_truncated_stream_keeps_what_came_before_and_quarantines_the_file(
    capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path, go_vulndb: Path, kind: str
) -> None:
    lines = zstd.decompress(go_vulndb.read_bytes()).splitlines()
    data = b"\n".join(lines) + b"\n"
    packed = zstd.compress(data) if kind == "zst" else gzip.compress(data, mtime=0)
    cut = tmp_path / f"cut.jsonl.{kind}"
    cut.write_bytes(packed[: len(packed) // 2])
    run = _ingest(capsys, cut)
    assert run.code == 7  # --strict: a rejection is not success
    report = run.payload
    assert 0 < report["added"] < len(lines)
    [rejection] = report["rejections"]
    assert rejection["source"] == cut.name
    assert "truncated" in rejection["reason"] and f"{report['added']} records read" in rejection["reason"]
    assert rejection["quarantined"].endswith(".bin")
    kept = Path(rejection["quarantined"]).read_bytes()
    assert kept == cut.read_bytes()  # the file as received, for whoever investigates
    [reason] = _quarantine(home).values()
    assert reason["fault"] == "truncated" and reason["sources"] == [cut.name]
    [stats] = stella(capsys, "ledger", "stats", "--tenant", "acme", "--json").payload["tenants"]
    assert (stats["records"], stats["quarantined"], stats["quarantineRejections"]) == (report["added"], 1, 1)


@pytest.mark.parametrize("name", ["pad.jsonl.zst", "pad.jsonl.gz", "pad.json.zst", "pad.json.gz"])
def test_trailing_garbage_after_a_complete_stream_is_refused(
    capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path, name: str
) -> None:
    document = b'{"id": "GHSA-x", "modified": "2026-01-01T00:00:00Z", "affected": []}\n'
    packed = zstd.compress(document) if name.endswith("zst") else gzip.compress(document, mtime=0)
    (tmp_path / name).write_bytes(packed + b"GARBAGE")
    run = _ingest(capsys, tmp_path / name)
    assert run.code == 7
    [rejection] = run.payload["rejections"]
    assert "trailing" in rejection["reason"] or "not a" in rejection["reason"]
    assert _quarantine(home)  # quarantined, not just reported


def test_corrupt_files_are_each_quarantined_and_counted(
    capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl.zst").write_bytes(b"\x28\xb5\x2f\xfd" + os.urandom(64))
    (tmp_path / "in" / "b.json.gz").write_bytes(gzip.compress(b"{}" * 1000, mtime=0)[:-12])
    run = _ingest(capsys, tmp_path / "in")
    assert run.code == 7
    assert sorted(r["source"] for r in run.payload["rejections"]) == ["in/a.jsonl.zst", "in/b.json.gz"]
    assert all(r["quarantined"] for r in run.payload["rejections"])
    stats = stella(capsys, "ledger", "stats", "--tenant", "acme", "--json")
    assert stats.code == 6  # no records at all: not found, but no crash
    assert len(_quarantine(home)) == 2


def test_duplicate_keys_and_nan_are_rejected_with_their_reason(
    capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    base = '"id": "GHSA-dup", "modified": "2026-01-01T00:00:00Z", "affected": []'
    (tmp_path / "in" / "dup.json").write_text("{" + base + ', "id": "GHSA-other"}')
    (tmp_path / "in" / "nan.json").write_text("{" + base + ', "severity": NaN}')
    run = _ingest(capsys, tmp_path / "in")
    reasons = {r["source"]: r["reason"] for r in run.payload["rejections"]}
    assert "duplicate key 'id'" in reasons["in/dup.json"]
    assert "NaN is not a JSON number" in reasons["in/nan.json"]
    faults = sorted(str(q["fault"]) for q in _quarantine(home).values())
    assert faults == ["duplicate-key", "non-finite-number"]


def test_the_same_rejected_bytes_twice_are_one_entry_naming_both_sources(
    capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    for name in ("one.json", "two.json"):
        (tmp_path / "in" / name).write_text("not json")
    run = _ingest(capsys, tmp_path / "in")
    rejections = run.payload["rejections"]
    assert len(rejections) == 2 and rejections[0]["quarantined"] == rejections[1]["quarantined"] != ""
    [entry] = _quarantine(home).values()
    assert entry["sources"] == ["in/one.json", "in/two.json"]


def test_special_files_are_refused_without_hanging(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "ok.json").write_text('{"id": "GHSA-ok", "modified": "2026-01-01T00:00:00Z", "affected": []}')
    os.mkfifo(folder / "fifo.json")
    (folder / "urandom.json").symlink_to("/dev/urandom")
    (folder / "linked").symlink_to(tmp_path)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "sock.jsonl"))
    sock.close()
    env = {**os.environ, "PYTHONPATH": str(REPO), "STELLA_HOME": str(home)}
    done = subprocess.run(
        [str(VENV_BIN / "stella"), "ledger", "ingest", "--tenant", "acme", "--json", "--strict", str(folder)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,  # a FIFO opened for reading would block forever (and hold the tenant lock)
    )
    assert done.returncode == 7, done.stderr
    report = json.loads(done.stdout)
    assert report["added"] == 1 and report["rejections"] == []
    assert {(r["source"], r["kind"]) for r in report["refusedFiles"]} == {
        ("in/fifo.json", "FIFO"),
        ("in/urandom.json", "symlink"),
        ("in/linked", "symlink"),
        ("in/sock.jsonl", "socket"),
    }
    assert not (home / "ledger" / "tenants" / "acme" / "quarantine").exists()


def test_a_fifo_named_on_the_command_line_is_refused_too(home: Path, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.jsonl")
    env = {**os.environ, "PYTHONPATH": str(REPO), "STELLA_HOME": str(home)}
    done = subprocess.run(
        [
            str(VENV_BIN / "stella"),
            "ledger",
            "ingest",
            "--tenant",
            "acme",
            "--json",
            str(tmp_path / "pipe.jsonl"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 7  # nothing usable was given
    assert json.loads(done.stdout)["refusedFiles"] == [{"kind": "FIFO", "source": "pipe.jsonl"}]


def test_symlink_loops_and_dangling_links_are_named_as_such(
    capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path
) -> None:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    run = _ingest(capsys, tmp_path / "loop")
    assert run.code == 2 and "symlink loop" in run.stderr
    run = _ingest(capsys, tmp_path / "dangling")
    assert run.code == 2 and "missing target" in run.stderr
    run = _ingest(capsys, tmp_path / "absent")
    assert run.code == 6 and "does not exist" in run.stderr


def test_oversized_lines_keep_a_capped_prefix_and_the_rest_of_the_stream(
    capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path
) -> None:
    from stella.guards.streams import MAX_LINE_BYTES, QUARANTINE_PREFIX_BYTES

    good = b'{"id": "GHSA-%d", "modified": "2026-01-01T00:00:00Z", "affected": []}'
    big = b'{"id": "GHSA-big", "pad": "' + b"x" * MAX_LINE_BYTES + b'"}'
    (tmp_path / "big.jsonl").write_bytes(b"\n".join([good % 1, big, good % 2]) + b"\n")
    run = _ingest(capsys, tmp_path / "big.jsonl")
    assert run.payload["added"] == 2
    [rejection] = run.payload["rejections"]
    assert rejection["source"] == "big.jsonl#2" and "exceeds" in rejection["reason"]
    assert Path(rejection["quarantined"]).stat().st_size == QUARANTINE_PREFIX_BYTES


def test_torn_quarantine_records_are_reported_not_fatal(
    capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path, go_vulndb: Path
) -> None:
    assert _ingest(capsys, go_vulndb).code == 0
    folder = home / "ledger" / "tenants" / "acme" / "quarantine"
    folder.mkdir(parents=True)
    (folder / ("ab" * 32 + ".json")).write_bytes(b'{"source": "x", "rea')  # torn by an old crash
    stats = stella(capsys, "ledger", "stats", "--tenant", "acme", "--json")
    assert stats.code == 0
    assert stats.payload["tenants"][0]["quarantineTorn"] == ["ab" * 32 + ".json"]
    text = stella(capsys, "ledger", "stats", "--tenant", "acme")
    assert text.code == 0 and "torn" in text.stdout


def test_stale_temp_files_of_dead_writers_are_cleaned_and_live_ones_kept(
    capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path
) -> None:
    segments = home / "ledger" / "tenants" / "acme" / "segments"
    quarantine = home / "ledger" / "tenants" / "acme" / "quarantine"
    segments.mkdir(parents=True)
    quarantine.mkdir(parents=True)
    dead = int(
        subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True).stdout
    )
    (segments / f".000001-aa.avro.tmp-{dead}-x1").write_bytes(b"half a segment")
    (quarantine / f".{'cd' * 32}.json.tmp-{dead}-x2").write_bytes(b"half a reason")
    live = quarantine / f".{'ef' * 32}.bin.tmp-{os.getppid()}-x3"
    live.write_bytes(b"another run is writing this")
    (tmp_path / "doc.json").write_text('{"id": "GHSA-1", "modified": "2026-01-01T00:00:00Z", "affected": []}')
    run = _ingest(capsys, tmp_path / "doc.json")
    assert sorted(run.payload["cleanedTempFiles"]) == [
        f"quarantine/.{'cd' * 32}.json.tmp-{dead}-x2",
        f"segments/.000001-aa.avro.tmp-{dead}-x1",
    ]
    assert live.exists()
    assert LedgerStore(str(home / "ledger")).quarantined("acme") == []


@pytest.mark.parametrize("damage", ["truncate-avro", "pad-avro", "truncate-digests"])
def test_a_damaged_segment_is_named_not_a_crash(
    capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path, damage: str
) -> None:
    (tmp_path / "doc.json").write_text('{"id": "GHSA-1", "modified": "2026-01-01T00:00:00Z", "affected": []}')
    assert _ingest(capsys, tmp_path / "doc.json").code == 0
    [avro] = (home / "ledger" / "tenants" / "acme" / "segments").glob("*.avro")
    if damage == "truncate-avro":
        avro.write_bytes(avro.read_bytes()[:-20])
    elif damage == "pad-avro":
        avro.write_bytes(avro.read_bytes() + b"trailing garbage")
    else:
        digests = avro.with_suffix(".digests.zst")
        digests.write_bytes(digests.read_bytes()[:-3])
    command = (
        ("ledger", "stats", "--tenant", "acme")
        if damage != "truncate-digests"
        else ("ledger", "ingest", "--tenant", "acme", str(tmp_path / "doc.json"))
    )
    run = stella(capsys, *command)
    assert run.code == 7, run.stderr  # ERR_EXPORT_INPUT, naming the damaged file
    assert avro.stem in run.stderr
