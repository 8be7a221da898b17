"""The shared guards on their own: ids, strict JSON, streams, files, durable writes."""

from __future__ import annotations

import gzip
import io
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from backports import zstd
from hypothesis import given
from hypothesis import strategies as st

from stella import storage
from stella.errors import BundleIntegrityError, InputError, NotFoundError, UsageError
from stella.guards import files, streams, strictjson
from stella.guards.ids import check_id

# --- ids ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "",
        ".",
        "..",
        "../../x",
        "/srv/victim",
        "acme\n",
        "Acme",
        "a/b",
        "a b",
        "-a",
        "a-",
        "x" * 129,
        "a\x00b",
        "é",
    ],
)
def test_check_id_refuses_what_cannot_be_a_path_component(bad: str) -> None:
    with pytest.raises(BundleIntegrityError) as caught:
        check_id(bad, "exportId", error=BundleIntegrityError)
    assert caught.value.details["field"] == "exportId"


def test_check_id_accepts_real_ids_and_defaults_to_a_usage_error() -> None:
    for good in ("acme", "a", "acme-json-raw-0123456789ab", "run.2026_12", "x" * 128):
        assert check_id(good, "id") == good
    with pytest.raises(UsageError):
        check_id(None, "tenant")


@given(st.text(max_size=140))
def test_every_accepted_id_is_one_safe_path_component(value: str) -> None:
    try:
        check_id(value, "id")
    except UsageError:
        return
    assert os.path.basename(value) == value and value not in (".", "..")
    assert Path("/base", value).resolve().parent == Path("/base")
    assert value == value.strip() and value.isascii() and "\n" not in value


# --- strict JSON ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (b'{"a": 1, "a": 2}', "duplicate-key"),
        (b'{"x": {"b": 1, "b": 1}}', "duplicate-key"),
        (b"[NaN]", "non-finite-number"),
        (b'{"a": -Infinity}', "non-finite-number"),
        (b'{"a": "\xff"}', "not-utf8"),
        (b"[" * 100_000 + b"]" * 100_000, "too-deep"),
        (b'{"a": 1} x', "syntax"),
        (b"\xef\xbb\xbf{}", "syntax"),
    ],
)
def test_strict_json_refuses_with_a_reason(text: bytes, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        strictjson.loads(text, what="doc.json")
    assert caught.value.details["reason"] == reason
    assert "doc.json" in caught.value.message


def test_strict_json_limit_and_error_class() -> None:
    assert strictjson.loads('{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}
    with pytest.raises(BundleIntegrityError) as caught:
        strictjson.loads(b"[1]" + b" " * 10, error=BundleIntegrityError, max_bytes=5)
    assert caught.value.details["reason"] == "too-large"


# --- streams --------------------------------------------------------------------------------------

PAYLOAD = b"".join(b'{"n": %d}\n' % i for i in range(50_000))


def _compressed(kind: str, data: bytes) -> bytes:
    return zstd.compress(data) if kind == "zstd" else gzip.compress(data, mtime=0)


def _read_all(kind: str, data: bytes, **kwargs: int) -> bytes:
    reader = streams.open_decompressed(io.BytesIO(data), kind, what="in.x", **kwargs)  # type: ignore[arg-type]
    return streams.read_document(reader, what="in.x", limit=1 << 30)


@pytest.mark.parametrize("kind", ["zstd", "gzip"])
def test_streams_detect_truncation_trailing_data_and_corruption(kind: str) -> None:
    whole = _compressed(kind, PAYLOAD)
    assert _read_all(kind, whole) == PAYLOAD
    assert _read_all(kind, whole + whole) == PAYLOAD + PAYLOAD  # concatenated frames/members are valid
    for cut in (1, len(whole) // 2):
        with pytest.raises(InputError) as caught:
            _read_all(kind, whole[:-cut])
        assert caught.value.details["reason"] == "truncated"
    with pytest.raises(InputError) as caught:
        _read_all(kind, whole + b"garbage!")
    assert caught.value.details["reason"] == "trailing-data"
    assert caught.value.details["bytesRead"] == len(PAYLOAD)
    with pytest.raises(InputError) as caught:
        _read_all(kind, b"not compressed at all" * 10)
    assert caught.value.details["reason"] in {"corrupt", "truncated"}


@pytest.mark.parametrize("kind", ["zstd", "gzip"])
def test_streams_stop_bombs_and_oversized_output(kind: str) -> None:
    bomb = _compressed(kind, b"\0" * (64 << 20))
    with pytest.raises(InputError) as caught:
        _read_all(kind, bomb)
    assert caught.value.details["reason"] == "bomb"
    assert caught.value.details["bytesRead"] < 2 * streams.RATIO_GRACE_BYTES
    with pytest.raises(InputError) as caught:
        _read_all(kind, _compressed(kind, PAYLOAD), max_output=1000)
    assert caught.value.details["reason"] == "too-large"


def test_zstd_window_above_the_decoder_limit_is_refused() -> None:
    compressor = zstd.ZstdCompressor(options={zstd.CompressionParameter.window_log: 28})
    big = compressor.compress(os.urandom(1 << 16) * 8) + compressor.flush()
    with pytest.raises(InputError):
        _read_all("zstd", big)


def test_iter_lines_caps_oversized_lines_and_skips_blank_ones() -> None:
    data = b'{"a":1}\r\n\n  \n' + b"x" * 5000 + b"\n" + b'{"b":2}'
    lines = list(streams.iter_lines(io.BytesIO(data), max_line=1000, keep=10))
    assert [(line.number, line.data, line.oversized) for line in lines] == [
        (1, b'{"a":1}', False),
        (4, b"x" * 10, True),
        (5, b'{"b":2}', False),
    ]
    assert lines[1].size == 5000


@given(st.lists(st.binary(max_size=40).filter(lambda b: b"\n" not in b), max_size=20), st.integers(1, 64))
def test_iter_lines_agrees_with_splitlines_whatever_the_chunking(parts: list[bytes], chunk: int) -> None:
    data = b"\n".join(parts)

    class Chunked(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            return super().read(chunk)

    got = [line.data for line in streams.iter_lines(Chunked(data), max_line=1 << 20)]
    assert got == [p.rstrip(b"\r") for p in parts if p.rstrip(b"\r").strip()]


def test_read_document_limit() -> None:
    with pytest.raises(InputError) as caught:
        streams.read_document(io.BytesIO(b"x" * 101), what="doc", limit=100)
    assert caught.value.details["reason"] == "too-large"
    assert streams.read_document(io.BytesIO(b"x" * 100), what="doc", limit=100) == b"x" * 100


# --- files ----------------------------------------------------------------------------------------


@pytest.fixture()
def specials(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "ok.json").write_bytes(b"{}")
    (root / "a.json").write_bytes(b"{}")
    os.mkfifo(root / "fifo.json")
    (root / "urandom.json").symlink_to("/dev/urandom")
    (root / "linked-dir").symlink_to(root / "sub")
    (root / "loop").symlink_to(root / "loop")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(root / "sock"))
    server.close()
    return root


def test_scan_tree_reports_links_and_special_files_without_entering_them(specials: Path) -> None:
    scan = files.scan_tree(specials)
    assert [p.relative_to(specials).as_posix() for p in scan.files] == ["a.json", "sub/ok.json"]
    assert {(r.path.name, r.kind) for r in scan.refused} == {
        ("fifo.json", "FIFO"),
        ("urandom.json", "symlink"),
        ("linked-dir", "symlink"),
        ("loop", "symlink"),
        ("sock", "socket"),
    }


def test_open_regular_refuses_without_blocking(specials: Path) -> None:
    # A subprocess with a timeout: a FIFO opened for reading would block forever.
    code = (
        "import sys; from stella.guards.files import open_regular; from stella.errors import InputError\n"
        "for name in ('fifo.json', 'urandom.json', 'linked-dir', 'loop', 'sock'):\n"
        "    try: open_regular(sys.argv[1] + '/' + name)\n"
        "    except InputError as e: print(e.details['kind'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(specials)], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split("\n")[:5] == ["FIFO", "symlink", "symlink", "symlink", "socket"]
    with files.open_regular(specials / "a.json") as handle:
        assert handle.read() == b"{}"


def test_path_error_names_symlink_loops_and_dangling_links(specials: Path) -> None:
    loop = files.path_error(specials / "loop", "input path")
    assert isinstance(loop, UsageError) and "symlink loop" in loop.message
    (specials / "dangling").symlink_to(specials / "nowhere")
    assert "missing target" in files.path_error(specials / "dangling", "input path").message
    assert isinstance(files.path_error(specials / "absent", "input path"), NotFoundError)


# --- durable writes -------------------------------------------------------------------------------


def test_atomic_local_leaves_the_old_file_on_failure_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), storage.atomic_local(target) as handle:
        handle.write(b"half")
        raise RuntimeError("crash")
    assert target.read_bytes() == b"old"
    storage.write_atomic(str(target), b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_stale_temp_files_spares_live_owners(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    (tmp_path / f".a.json.tmp-{dead_pid}-xyz").write_bytes(b"torn")
    (tmp_path / f".b.json.tmp-{os.getppid()}-xyz").write_bytes(b"live")
    (tmp_path / "c.json").write_bytes(b"kept")
    assert [p.name for p in storage.stale_temp_files(tmp_path)] == [f".a.json.tmp-{dead_pid}-xyz"]


def test_docs_state_the_limits_the_code_enforces() -> None:
    from stella.guards.ids import ID_PATTERN
    from stella.model import TENANT_PATTERN

    text = (Path(__file__).resolve().parents[2] / "docs" / "errors.md").read_text()
    mib = 1 << 20
    for fragment in (
        f"`{ID_PATTERN.pattern}`",
        f"`{TENANT_PATTERN.pattern}`",
        f"{streams.READ_CHUNK // mib} MiB per read",
        f"{streams.RATIO_GRACE_BYTES // mib} MiB of output, more than {streams.MAX_RATIO}×",
        f"2^{streams.MAX_WINDOW_LOG} bytes",
        f"{streams.MAX_DOCUMENT_BYTES // mib} MiB (`MAX_DOCUMENT_BYTES`)",
        f"{streams.MAX_LINE_BYTES // mib} MiB (`MAX_LINE_BYTES`)",
        f"first {streams.QUARANTINE_PREFIX_BYTES >> 10} KiB",
        f"larger than {files.USER_FILE_MAX_BYTES >> 20} MiB",
        f"up to\n{streams.MAX_LINE_BYTES >> 20} MiB",
    ):
        assert fragment in text, fragment
