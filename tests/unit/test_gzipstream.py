"""The parallel gzip writer: the same bytes for any thread count, a standard gzip every reader takes."""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from stella.gzipstream import BLOCK_SIZE, open_gzip_writer


def _payload() -> bytes:
    """3.4 blocks of half-compressible bytes: page-like runs of zeros between random words."""
    rng = random.Random(12)
    pages = []
    while sum(map(len, pages)) < 3 * BLOCK_SIZE + BLOCK_SIZE // 3:
        pages.append(rng.randbytes(rng.randrange(200, 3000)) + bytes(rng.randrange(0, 2000)))
    return b"".join(pages)[: 3 * BLOCK_SIZE + BLOCK_SIZE // 3 + 17]


PAYLOAD = _payload()


def _gzip(data: bytes, threads: int, chunk: int | None = None) -> bytes:
    sink = io.BytesIO()
    with open_gzip_writer(sink, threads=threads) as out:
        if chunk is None:
            out.write(data)
        else:
            for start in range(0, len(data), chunk):
                out.write(data[start : start + chunk])
    return sink.getvalue()


@pytest.fixture(scope="module")
def one_thread() -> bytes:
    return _gzip(PAYLOAD, 1)


@pytest.mark.parametrize(("threads", "chunk"), [(2, None), (3, 7777), (4, BLOCK_SIZE + 1), (1, 65536)])
def test_bytes_do_not_depend_on_threads_or_write_pattern(
    one_thread: bytes, threads: int, chunk: int | None
) -> None:
    assert _gzip(PAYLOAD, threads, chunk) == one_thread


def test_every_reader_gets_the_input_back_from_one_member(one_thread: bytes, tmp_path: Path) -> None:
    assert gzip.decompress(one_thread) == PAYLOAD
    reader = zlib.decompressobj(wbits=31)  # the reference zlib, one gzip member only
    assert reader.decompress(one_thread) + reader.flush() == PAYLOAD
    assert reader.eof and reader.unused_data == b""
    gz = shutil.which("gzip")
    assert gz is not None, "gzip(1) is part of every Debian install"
    (tmp_path / "p.gz").write_bytes(one_thread)
    subprocess.run([gz, "-t", str(tmp_path / "p.gz")], check=True)
    unpacked = subprocess.run([gz, "-dc", str(tmp_path / "p.gz")], check=True, capture_output=True).stdout
    assert hashlib.sha256(unpacked).digest() == hashlib.sha256(PAYLOAD).digest()


def test_header_names_no_file_and_no_time(one_thread: bytes) -> None:
    assert one_thread[:4] == b"\x1f\x8b\x08\x00"  # deflate, no FNAME/FCOMMENT/FEXTRA
    assert one_thread[4:8] == bytes(4)  # MTIME 0
    assert one_thread[9] == 0xFF  # OS unknown: nothing about the host


def test_blocks_use_the_previous_window_as_dictionary() -> None:
    # A random 16 KiB chunk repeated over four blocks. Without the dictionary each block
    # would cost what the first does (it must spell the chunk out once); with it, the
    # later blocks find the chunk in the previous block's window (about half the cost).
    chunk = random.Random(3).randbytes(16 * 1024)
    data = chunk * (4 * BLOCK_SIZE // len(chunk))
    alone = len(_gzip(data[:BLOCK_SIZE], 1))
    assert len(_gzip(data, 2)) < 3 * alone


def test_empty_input_is_a_valid_empty_gzip() -> None:
    for threads in (1, 2):
        data = _gzip(b"", threads)
        assert gzip.decompress(data) == b""
    assert _gzip(b"", 1) == _gzip(b"", 2)


def test_a_failed_write_stops_the_threads_and_leaves_no_trailer() -> None:
    sink = io.BytesIO()
    with pytest.raises(RuntimeError, match="source vanished"), open_gzip_writer(sink, threads=2) as out:
        out.write(PAYLOAD[: 2 * BLOCK_SIZE + 5])
        raise RuntimeError("source vanished")
    with pytest.raises(EOFError):
        gzip.decompress(sink.getvalue())  # truncated: it never looks finished
    assert out.closed


def test_threads_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"), open_gzip_writer(io.BytesIO(), threads=0):
        pass
