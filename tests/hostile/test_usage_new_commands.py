"""The sweep of ``test_usage`` over the newer commands: mirror, policy, schedules, publish, auth, remote.

Same contract: whatever the user types, a documented exit code other than 1 and no traceback,
and nothing created outside the test's scratch folders.
"""

from __future__ import annotations

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.hostile.test_usage import _SETTINGS, _check, _run, _value, places

__all__: list[str] = []

_ = places  # the shared fixture, imported for pytest


@pytest.fixture(autouse=True)
def _home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scratch home, working folder and store: relative values land there, not in the repo."""
    monkeypatch.setenv("STELLA_HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.delenv("STELLA_STORE_URL", raising=False)
    monkeypatch.delenv("STELLA_SERVER", raising=False)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(scope="module")
def closed_url() -> str:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _maybe(
    data: st.DataObject, argv: list[str], flags: tuple[str, ...], value: st.SearchStrategy[str]
) -> None:
    for flag in flags:
        if data.draw(st.booleans()):
            argv += [flag, data.draw(value)]


@_SETTINGS
@given(data=st.data())
def test_mirror_commands(places: dict[str, str], data: st.DataObject) -> None:
    value = _value(places)
    if data.draw(st.booleans()):
        argv = ["mirror", "import", data.draw(value), "--into", data.draw(value)]
        flag = data.draw(st.sampled_from(["--key", "--trust-root"]))
        _maybe(data, argv, (flag, "--identity", "--now"), value)
        if data.draw(st.booleans()):
            argv.append("--dry-run")
    else:
        argv = ["mirror", "status", data.draw(value)]
        _maybe(data, argv, ("--now",), value)
    _check(argv)


@_SETTINGS
@given(data=st.data())
def test_policy_commands(places: dict[str, str], data: st.DataObject) -> None:
    value = _value(places)
    argv = ["policy", data.draw(st.sampled_from(["publish", "list"]))]
    if argv[1] == "publish":
        argv.append(data.draw(value))
    argv += ["--tenant", data.draw(st.just("acme") | value)]
    _maybe(data, argv, ("--ledger",), value)
    _check(argv)


_SCHEDULE_FLAGS = (
    "--timezone",
    "--quiet",
    "--max-delay",
    "--selector",
    "--option",
    "--target",
    "--allow-host",
)
_RUN_FLAGS = ("--ledger", "--out", "--allow-host", "--username", "--retries")


@_SETTINGS
@given(data=st.data())
def test_schedule_commands(places: dict[str, str], data: st.DataObject) -> None:
    value = _value(places)
    tenant = st.just("acme") | value
    command = data.draw(st.sampled_from(["create", "list", "pause", "resume", "delete", "run-now", "tick"]))
    argv = ["export", "schedule", command]
    if command == "create":
        argv += [data.draw(st.just("nightly") | value), "--tenant", data.draw(tenant)]
        argv += ["--profile", data.draw(st.just("json:raw") | value)]
        argv += [data.draw(st.sampled_from(["--cron", "--at", "--on"])), data.draw(value)]
        _maybe(data, argv, _SCHEDULE_FLAGS, value)
        if data.draw(st.booleans()):
            argv += ["--catch-up", data.draw(st.just("skip") | value)]
    elif command == "list":
        _maybe(data, argv, ("--tenant",), value)
    elif command == "tick":
        _maybe(data, argv, _RUN_FLAGS, value)
    else:
        argv += [data.draw(st.just("nightly") | value), "--tenant", data.draw(tenant)]
        if command == "run-now":
            _maybe(data, argv, _RUN_FLAGS, value)
    if data.draw(st.booleans()):
        argv += [
            "--store",
            data.draw(value | st.sampled_from(["sqlite:///", "sqlite:////dev/null", "x://y"])),
        ]
    _check(argv)


@_SETTINGS
@given(data=st.data())
def test_export_publish(places: dict[str, str], data: st.DataObject) -> None:
    value = _value(places)
    target = value | st.sampled_from(
        ["file:///", "file://host/x", "gs://", "oci://", "oci://h:99999/r", "http://x"]
    )
    argv = ["export", "publish", data.draw(value), "--target", data.draw(target)]
    flag = data.draw(st.sampled_from(["--key", "--trust-root"]))
    _maybe(data, argv, (flag, "--allow-host", "--username", "--retries"), value)
    _check(argv)


@_SETTINGS
@given(data=st.data())
def test_auth_token(places: dict[str, str], data: st.DataObject) -> None:
    value = _value(places)
    argv = ["auth", "token", "--tenant", data.draw(st.just("acme") | value)]
    argv += ["--scope", data.draw(st.just("all") | value)]
    _maybe(data, argv, ("--ttl", "--subject"), value)
    _check(argv)


@_SETTINGS
@given(data=st.data())
def test_remote_client(places: dict[str, str], closed_url: str, data: st.DataObject) -> None:
    value = _value(places)
    server = data.draw(st.just(closed_url) | value | st.sampled_from(["http://", "ftp://x", "http://[::1"]))
    argv = ["--server", server]
    if data.draw(st.booleans()):
        argv += ["--tenant", data.draw(st.just("acme") | value)]
    command = data.draw(st.sampled_from(["run", "status", "list", "download", "verify", "profiles"]))
    argv += ["export", command]
    if command == "run":
        argv += ["--profile", data.draw(st.just("json:raw") | value)]
        _maybe(data, argv, ("--selector", "--option", "--as-of"), value)
    elif command == "list":
        _maybe(data, argv, ("--status", "--profile", "--limit"), value)
    elif command in ("status", "download", "verify"):
        argv.append(data.draw(value))
        if command == "download":
            _maybe(data, argv, ("--out",), value)
    token = data.draw(st.none() | st.sampled_from(["", "x", "\n", "a" * 5000]))
    _check(argv, {"STELLA_TOKEN": token} if token is not None else None)


@pytest.mark.parametrize(
    ("argv", "token", "says"),
    [
        (["export", "schedule", "list", "--store", "sqlite:///"], None, "name a file"),
        (["export", "schedule", "list", "--store", "sqlite:////dev/null"], None, "name a file"),
        (["--server", "\n", "export", "status", "r1"], "x", "--server"),
        (["--server", "ftp://host", "export", "profiles"], "x", "expected http"),
        (["--server", "http://127.0.0.1:9", "--tenant", "\x80", "export", "list"], "x", "invalid tenant"),
        (["--server", "http://127.0.0.1:9", "export", "list"], "tok\u00e9n", "STELLA_TOKEN"),
    ],
)
def test_bad_store_server_tenant_or_token_is_a_usage_error(
    argv: list[str], token: str | None, says: str
) -> None:
    code, err = _run(argv, {"STELLA_TOKEN": token} if token else None)
    assert code == 2, err
    assert says in err and "Traceback" not in err


@pytest.mark.parametrize("port", ["{closed}", "99999"])
def test_unreachable_postgres_store_is_a_remote_error(closed_url: str, port: str) -> None:
    """Not a 30 s ``PoolTimeout`` reported as a bug: exit 13 at once, naming the store, no password."""
    url = f"postgresql://u:hunter2@127.0.0.1:{port.format(closed=closed_url.rsplit(':', 1)[1])}/db"
    code, err = _run(["export", "schedule", "list", "--store", url])
    assert code == 13, err
    assert "cannot reach the run store" in err and "hunter2" not in err and "Traceback" not in err


# Every command that takes a path, given one the OS refuses outright: too long a name, a path through a
# file, a symlink loop. The OSError the command meets is a usage error naming the path, never exit 1.
_PATH_COMMANDS = [
    ["mirror", "status", "{p}"],
    ["mirror", "import", "{p}", "--into", "{p}"],
    ["export", "verify", "{p}"],
    ["export", "ls", "{p}"],
    ["export", "run", "--tenant", "acme", "--profile", "json:raw", "--ledger", "{p}", "--out", "{p}"],
    ["ledger", "ingest", "{p}", "--tenant", "acme", "--ledger", "{p}"],
    ["ledger", "stats", "--ledger", "{p}"],
    ["policy", "publish", "{p}", "--tenant", "acme", "--ledger", "{p}"],
]


@pytest.mark.parametrize("kind", ["too-long", "under-file", "loop"])
@pytest.mark.parametrize("template", _PATH_COMMANDS, ids=lambda t: " ".join(t[:2]))
def test_unusable_paths_are_usage_errors(places: dict[str, str], template: list[str], kind: str) -> None:
    path = {"too-long": "a" * 300, "under-file": places["under-file"], "loop": places["loop"]}[kind]
    code, err = _run([part.replace("{p}", path) for part in template])
    assert code not in (0, 1), (template, kind, err)
    assert "Traceback" not in err and "ERR_EXPORT_INTERNAL" not in err, (template, kind, err)
