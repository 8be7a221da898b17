"""Every option of every command, given hostile values: a documented exit code, never a traceback.

Exit 1 means "a bug" (docs/errors.md), so a value the user typed must never produce it:
``--out`` naming a file, ``--ledger`` under a file, out-of-range times, a symlink loop,
a FIFO where a file is expected, newline-carrying ids and so on all exit 2 (or the code
of what they are: 3 for a bad bundle, 6 for something absent).
"""

from __future__ import annotations

import io
import os
import sys
from contextlib import redirect_stderr, redirect_stdout

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stella.cli import main
from tests.hostile.conftest import DOCUMENTED_EXITS

_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("places")
    (root / "file").write_text("not a folder")
    (root / "dir").mkdir()
    (root / "loop").symlink_to(root / "loop")
    (root / "dangling").symlink_to(root / "nowhere")
    os.mkfifo(root / "fifo")
    (root / "bad.json").write_text('{"a": 1, "a": 2}')
    return {
        "file": str(root / "file"),
        "under-file": str(root / "file" / "sub"),
        "dir": str(root / "dir"),
        "empty-ledger": str(root / "dir" / "ledger"),
        "loop": str(root / "loop"),
        "dangling": str(root / "dangling"),
        "fifo": str(root / "fifo"),
        "bad-json": str(root / "bad.json"),
        "absent": str(root / "absent"),
        "out": str(root / "out"),
    }


_TEXT = st.sampled_from(
    [
        "", "-", "\n", "acme\n", "ACME", "a" * 300, "../x", "/dev/null", "x=y", "=", "a=b=c", "ecosystem=",
        "next-update=soon", "json:none", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+01:00",
        "2026-13-45T00:00:00Z", "-1", "0", "99999999999999999999", "nan", "1e400", "\x00", "é",
    ]
) | st.text(max_size=12)  # fmt: skip


def _value(places: dict[str, str]) -> st.SearchStrategy[str]:
    return _TEXT | st.sampled_from(sorted(places.values()))


# What a hostile caller may pipe into ``-``: nothing, not JSON, duplicate keys, binary, a half JSONL stream.
_STDIN = st.sampled_from([b"", b"\n", b"{}", b'{"a": 1, "a": 2}', b"\xff\xfe\x00", b'{"id": "X"}\n{"id"'])


def _run(argv: list[str], environ: dict[str, str] | None = None, stdin: bytes = b"") -> tuple[int, str]:
    """``main(argv)`` in-process with ``stdin`` as standard input (never pytest's unreadable one)."""
    saved = {k: os.environ.get(k) for k in (environ or {})}
    os.environ.update(environ or {})
    err = io.StringIO()
    saved_stdin, sys.stdin = sys.stdin, io.TextIOWrapper(io.BytesIO(stdin))
    try:
        with redirect_stdout(io.StringIO()), redirect_stderr(err):
            code = main(argv)
    finally:
        sys.stdin = saved_stdin
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return code, err.getvalue()


def _check(argv: list[str], environ: dict[str, str] | None = None, stdin: bytes = b"") -> None:
    code, err = _run(argv, environ, stdin)
    assert code in DOCUMENTED_EXITS and code != 1, (argv, environ, stdin, err)
    assert "Traceback" not in err, (argv, err)


@pytest.fixture(autouse=True)
def _home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scratch home and working folder: relative values (``--ledger é``) land there, not in the repo."""
    monkeypatch.setenv("STELLA_HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@_SETTINGS
@given(data=st.data())
def test_ledger_commands(places: dict[str, str], data: st.DataObject) -> None:
    value = _value(places)
    command = data.draw(st.sampled_from(["ingest", "stats"]))
    argv = ["ledger", command, "--tenant", data.draw(st.just("acme") | value)]
    if data.draw(st.booleans()):
        argv += ["--ledger", data.draw(value)]
    if command == "ingest":
        if data.draw(st.booleans()):
            argv += ["--ingested-at", data.draw(value)]
        argv += [data.draw(value)]
    epoch = data.draw(st.none() | st.sampled_from(["-99999999999", "99999999999999", "x", "1e3", "0"]))
    _check(argv, {"SOURCE_DATE_EPOCH": epoch} if epoch is not None else None, data.draw(_STDIN))


@pytest.mark.parametrize("closed", [True, False], ids=["fd-0-closed", "unreadable"])
def test_ingest_dash_without_a_readable_stdin_is_a_usage_error(
    places: dict[str, str], monkeypatch: pytest.MonkeyPatch, closed: bool
) -> None:
    """``-`` when there is no stdin (``0<&-``) or it cannot be read (a captured test): exit 2 naming it."""
    unreadable = io.TextIOWrapper(io.BytesIO())
    unreadable.close()
    monkeypatch.setattr(sys, "stdin", None if closed else unreadable)
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        code = main(["ledger", "ingest", "--tenant", "acme", "--ledger", places["empty-ledger"], "-"])
    assert code == 2, err.getvalue()
    assert "ERR_EXPORT_USAGE" in err.getvalue() and "standard input" in err.getvalue()


@_SETTINGS
@given(data=st.data())
def test_ledger_generate_refuses_bad_numbers(places: dict[str, str], data: st.DataObject) -> None:
    bad = st.sampled_from(["-1", "0", "x", "1e3", "", "-99999999999999999999"])
    argv = ["ledger", "generate", "--tenant", data.draw(st.just("acme") | _value(places))]
    argv += ["--records", data.draw(bad), "--workers", data.draw(bad | st.just("1"))]
    _check(argv)


@_SETTINGS
@given(data=st.data())
def test_export_run(places: dict[str, str], data: st.DataObject) -> None:
    value = _value(places)
    argv = ["export", "run", "--tenant", data.draw(st.just("acme") | value)]
    argv += ["--profile", data.draw(st.sampled_from(["json:raw", "trivy:db", "mirror:full"]) | value)]
    argv += ["--ledger", places["empty-ledger"]]  # every valid request ends at "no segments" (6)
    for flag in ("--selector", "--option", "--as-of", "--out", "--records-per-shard", "--workers"):
        if data.draw(st.booleans()):
            argv += [flag, data.draw(value)]
    _check(argv)


@_SETTINGS
@given(data=st.data())
def test_bundle_commands(places: dict[str, str], data: st.DataObject) -> None:
    value = _value(places)
    command = data.draw(st.sampled_from(["verify", "archive", "decrypt"]))
    argv = ["export", command, data.draw(value)]
    if command == "verify":
        flag = data.draw(st.sampled_from(["--key", "--trust-root"]))
        if data.draw(st.booleans()):
            argv += [flag, data.draw(value)]
    elif command == "archive":
        if data.draw(st.booleans()):
            argv += ["--out", data.draw(value)]
    else:
        argv += ["--identity", data.draw(value), "--out", data.draw(value)]
    _check(argv)


@_SETTINGS
@given(data=st.data())
def test_keys_commands(places: dict[str, str], data: st.DataObject) -> None:
    value = _value(places)
    command = data.draw(st.sampled_from(["public", "trust-root"]))
    argv = ["keys", command, data.draw(value), "--out", data.draw(value)]
    _check(argv)
