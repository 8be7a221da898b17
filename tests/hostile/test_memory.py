"""Bombs and unbounded input: each reader's peak RSS, measured in a child process, stays bounded.

Every input here decompresses to 1 GiB (a 33 KB zstd stream of zeros and its siblings).
Before the guards, ingest peaked at 2.26 GB and verify at 1.2 GB on such input.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from backports import zstd

from stella.canonical import dumps
from tests.hostile.conftest import stella_measured

GIB = 1 << 30
RSS_LIMIT_MB = 300
pytestmark = pytest.mark.slow


def _zeros(total: int) -> Iterator[bytes]:
    chunk = bytes(1 << 20)
    for _ in range(total // len(chunk)):
        yield chunk


def _zstd_of(chunks: Iterator[bytes]) -> bytes:
    compressor = zstd.ZstdCompressor(level=1)
    return b"".join(compressor.compress(c) for c in chunks) + compressor.flush()


@pytest.fixture(scope="module")
def zero_bomb() -> bytes:
    return _zstd_of(_zeros(GIB))


@pytest.mark.parametrize("name", ["bomb.jsonl.zst", "bomb.json.zst"])
def test_ingest_of_a_zstd_bomb(tmp_path: Path, zero_bomb: bytes, name: str) -> None:
    source = tmp_path / name
    source.write_bytes(zero_bomb)
    home = tmp_path / "home"
    run = stella_measured("ledger", "ingest", "--tenant", "acme", str(source), env={"STELLA_HOME": str(home)})
    assert run.code == 7, run.stderr  # nothing usable: exit 7, the bytes quarantined
    print(f"peak RSS {run.peak_rss_mb:.0f} MB")
    assert run.peak_rss_mb < RSS_LIMIT_MB, run.peak_rss_mb
    [reason_file] = (home / "ledger" / "tenants" / "acme" / "quarantine").glob("*.json")
    reason = json.loads(reason_file.read_bytes())
    assert reason["fault"] == "bomb"
    kept = reason_file.with_suffix(".bin").stat().st_size
    assert kept == len(zero_bomb)  # the compressed file as received, never the 1 GiB it expands to


def test_ingest_of_a_gzip_bomb_without_newlines(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=9) as packed:
        for chunk in _zeros(GIB // 4):
            packed.write(chunk.replace(b"\0", b"x"))
    source = tmp_path / "one-line.jsonl.gz"
    source.write_bytes(buffer.getvalue())
    home = tmp_path / "home"
    run = stella_measured("ledger", "ingest", "--tenant", "acme", str(source), env={"STELLA_HOME": str(home)})
    assert run.code == 7, run.stderr  # nothing usable: exit 7, the bytes quarantined
    print(f"peak RSS {run.peak_rss_mb:.0f} MB")
    assert run.peak_rss_mb < RSS_LIMIT_MB, run.peak_rss_mb
    quarantine = home / "ledger" / "tenants" / "acme" / "quarantine"
    assert sum(p.stat().st_size for p in quarantine.glob("*.bin")) < 20 << 20  # capped, not 256 MiB


def _tar_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    return info.tobuf(tarfile.GNU_FORMAT)


def test_verify_of_an_archive_with_a_1_gib_member(tmp_path: Path) -> None:
    def stream() -> Iterator[bytes]:
        yield _tar_header("data/zeros.bin", GIB)
        yield from _zeros(GIB)
        yield bytes(1024)

    archive = tmp_path / "bomb.tar.zst"
    archive.write_bytes(_zstd_of(stream()))
    run = stella_measured("export", "verify", str(archive), "--json")
    assert run.code == 3, run.stderr
    print(f"peak RSS {run.peak_rss_mb:.0f} MB")
    assert run.peak_rss_mb < RSS_LIMIT_MB, run.peak_rss_mb
    assert "bomb" in run.stderr


def test_verify_of_a_shard_that_expands_to_1_gib(tmp_path: Path, zero_bomb: bytes) -> None:
    """The record counter decompresses a .jsonl.zst shard in bounded steps, whatever its ratio."""
    folder = tmp_path / "bundle"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "x.jsonl.zst").write_bytes(zero_bomb)
    manifest = {
        "schema": "https://stellaops.io/export-center/manifest/v1alpha2",
        "exportId": "acme-json-raw-000000000000",
        "tenant": "acme",
        "contents": [
            {
                "path": "data/x.jsonl.zst",
                "digest": "sha256:" + hashlib.sha256(zero_bomb).hexdigest(),
                "bytes": len(zero_bomb),
                "records": 1,
            }
        ],
    }
    (folder / "export.json").write_bytes(dumps(manifest))
    run = stella_measured("export", "verify", str(folder), "--json")
    assert run.code == 3, run.stderr
    print(f"peak RSS {run.peak_rss_mb:.0f} MB")
    assert run.peak_rss_mb < RSS_LIMIT_MB, run.peak_rss_mb
    shutil.rmtree(folder)
