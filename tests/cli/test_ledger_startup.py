"""``stella ledger …`` builds only the ledger commands, so it starts without importing Beam."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stella.cli import build_parser, command_group
from tests.support import DATA, REPO, T0


@pytest.mark.parametrize(
    ("argv", "group"),
    [
        (["ledger", "ingest", "x"], "ledger"),
        (["--tenant", "acme", "ledger", "stats"], "ledger"),
        (["--server", "http://127.0.0.1:1", "export", "run"], "export"),
        (["--server=http://127.0.0.1:1", "ledger"], "ledger"),
        (["--", "ledger"], None),
        (["-h"], None),
    ],
)
def test_the_group_is_the_first_word_after_the_global_options(argv: list[str], group: str | None) -> None:
    assert command_group(argv) == group


@pytest.mark.parametrize(
    "argv",
    [
        ["ledger", "ingest", "--tenant", "acme", "--ingested-at", T0, "a.json", "b.jsonl.zst"],
        ["--tenant", "acme", "ledger", "generate", "--records", "10", "--seed", "3", "--advisories-only"],
        ["ledger", "quarantine", "ls", "--json"],
    ],
)
def test_the_ledger_parser_reads_ledger_commands_as_the_whole_tree_does(argv: list[str]) -> None:
    def parsed(group: str | None) -> dict[str, object]:
        values = vars(build_parser(group).parse_args(argv))
        return {k: v for k, v in values.items() if k != "handler"} | {
            "handler": values["handler"].__qualname__
        }

    assert parsed("ledger") == parsed(None)


def test_a_local_ingest_never_imports_beam(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from stella.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "assert code == 0, code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('apache_beam', 'pipelines')))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script, "ledger", "ingest", "--tenant", "acme", "--quiet",
         "--ledger", str(tmp_path / "ledger"), "--ingested-at", T0, str(DATA / "vex" / "openvex")],
        capture_output=True, text=True, cwd=REPO, check=True,
    )  # fmt: skip
    assert ran.stdout.strip().splitlines()[-1] == "[]"


def test_an_ingest_notifies_schedules_only_where_a_store_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stella.cli import main
    from stella.service.store.schedules import open_schedule_store

    def ingest(home: Path) -> int:
        monkeypatch.setenv("STELLA_HOME", str(home))
        monkeypatch.delenv("STELLA_STORE_URL", raising=False)
        return main(["ledger", "ingest", "--tenant", "acme", "--quiet", "--ingested-at", T0,
                     str(DATA / "vex" / "openvex")])  # fmt: skip

    bare = tmp_path / "bare"
    assert ingest(bare) == 0
    assert not (bare / "service" / "runs.db").exists()  # no store: none created
    served = tmp_path / "served"
    (served / "service").mkdir(parents=True)
    store = open_schedule_store(f"sqlite:///{served / 'service' / 'runs.db'}")
    assert ingest(served) == 0
    assert [e.name for e in store.events("acme", ["ingest:vex", "ingest:advisory"], 0)] == ["ingest:vex"]


def test_a_local_json_raw_export_imports_no_client_nor_schedule_store(
    small_ledger: Path, tmp_path: Path
) -> None:
    """Commands that only exist against a server or a schedule store load their modules when they run.

    ``stella export run`` registers the ``--server`` and ``schedule`` subcommands beside it, but a
    local export needs neither the HTTP client (httpx and its CLI extras) nor the schedule store
    and its metrics (~0.07 CPU s of every start-up, measured when this test was written).
    """
    script = (
        "import sys\n"
        "from stella.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "assert code == 0, code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('httpx', 'prometheus_client')\n"
        "             or m in ('stella.service.client', 'stella.schedules.scheduler',\n"
        "                      'stella.service.store.schedules', 'stella.telemetry.metrics')))\n"
        "print('pipelines.json_raw' in sys.modules)\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script, "export", "run", "--tenant", "acme", "--profile", "json:raw", "-q",
         "--ledger", str(small_ledger), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=REPO, check=True,
    )  # fmt: skip
    assert ran.stdout.strip().splitlines()[-2:] == ["[]", "True"]
