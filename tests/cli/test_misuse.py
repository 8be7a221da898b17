"""Typos, empty selections and misuses: each exits with its documented code and says why.

One table, run in-process. ``{ledger}``, ``{bundle}`` and ``{tmp}`` are filled with a small
real ledger, a bundle exported from it and a scratch folder. Each row also runs with
``--json`` and checks the failure envelope against the command's schema.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cli.conftest import Runner

RUN = (
    "export",
    "run",
    "--tenant",
    "acme",
    "--profile",
    "json:raw",
    "--ledger",
    "{ledger}",
    "--out",
    "{tmp}/out",
)

CASES: list[tuple[str, tuple[str, ...], int, str]] = [
    ("command typo", ("exprt",), 2, "did you mean 'export'"),
    ("sub-command typo", ("export", "verfy", "{bundle}"), 2, "did you mean 'verify'"),
    ("--sign-keys", (*RUN, "--sign-keys", "signer.key"), 2, "did you mean --sign-key?"),
    ("--encrypt-too", (*RUN, "--encrypt-too=age1xyz"), 2, "did you mean --encrypt-to?"),
    ("--selectors", (*RUN, "--selectors", "kind=vex"), 2, "did you mean --selector?"),
    ("--exclude-id as an option", (*RUN, "--exclude-id=GHSA-*"), 2, "unknown option --exclude-id"),
    ("--runnr", (*RUN, "--runnr=dask"), 2, "did you mean --runner?"),
    ("abbreviated option", (*RUN, "--sign", "k"), 2, "unknown option --sign"),
    ("typo after --", (*RUN, "--", "--runnr=dask"), 2, "did you mean --runner?"),
    ("stray argument", (*RUN, "extra"), 2, "unknown argument extra"),
    ("bad Beam value", (*RUN, "--direct_num_workers=many"), 2, "invalid int value"),
    ("--workers 0", (*RUN, "--workers", "0"), 2, "--workers must be at least 1"),
    ("unknown option elsewhere", ("export", "verify", "{bundle}", "--jsn"), 2, "did you mean --json?"),
    ("Beam option on verify", ("export", "verify", "{bundle}", "--runner=dask"), 2, "unknown option --runner"),
    ("unknown selector key", (*RUN, "--selector", "ecosystm=PyPI"), 2, "unknown selector key"),
    ("--out is a file", (*RUN[:-1], "{tmp}/file"), 2, "is a file, not a folder"),
    ("missing tenant", ("export", "run", "--profile", "json:raw", "--ledger", "{ledger}"), 2, "--tenant is required"),
    ("unknown tenant", ("ledger", "stats", "--tenant", "nobody", "--ledger", "{ledger}"), 6, "has no records"),
    ("verify a missing path", ("export", "verify", "{tmp}/nope"), 6, "does not exist"),
    ("verify a folder that is not a bundle", ("export", "verify", "{tmp}"), 2, "not a bundle"),
    ("a missing ingest path", ("ledger", "ingest", "--tenant", "acme", "--ledger", "{tmp}/l", "{tmp}/nope"), 6,
     "does not exist"),
    ("selection matches nothing", (*RUN, "--selector", "id=NOPE-*"), 22, "matched no records"),
    ("ecosystem typo selects nothing", (*RUN, "--selector", "ecosystem=PyPl"), 22, "matched no records"),
    ("trivy:db of VEX only", ("export", "run", "--tenant", "acme", "--profile", "trivy:db", "--ledger", "{ledger}",
                              "--out", "{tmp}/out", "--selector", "kind=vex"), 22, "matched no records"),
    ("prune --keep 0", ("export", "prune", "{tmp}", "--keep", "0"), 2, "--keep must be at least 1"),
    ("ls a missing folder", ("export", "ls", "{tmp}/nope"), 6, "does not exist"),
    ("unknown config key", ("ledger", "stats", "--ledger", "{ledger}"), 2, "unknown setting 'tenantt'"),
    ("ingest an empty folder", ("ledger", "ingest", "--tenant", "acme", "--ledger", "{tmp}/l", "{tmp}/empty"), 7,
     "nothing ingested"),
    ("ingest only rejected documents", ("ledger", "ingest", "--tenant", "acme", "--ledger", "{tmp}/l",
                                         "{tmp}/bad"), 7, "every one of 1 document was rejected"),
]  # fmt: skip


def _fill(argv: tuple[str, ...], ledger: Path, bundle: Path, tmp: Path) -> list[str]:
    return [a.format(ledger=ledger, bundle=bundle, tmp=tmp) for a in argv]


@pytest.mark.parametrize(("argv", "code", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_misuse_exits_with_its_code_and_says_why(
    cli: Runner,
    small_ledger: Path,
    small_bundle: Path,
    tmp_path: Path,
    argv: tuple[str, ...],
    code: int,
    message: str,
) -> None:
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.json").write_text('{"not": "an advisory"}')
    if "tenantt" in message:
        home = Path(os.environ["STELLA_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text('tenantt = "acme"\n')
    filled = _fill(argv, small_ledger, small_bundle, tmp_path)
    ran = cli(*filled)
    assert ran.code == code, ran.stderr
    assert message in ran.stderr, ran.stderr
    assert "Traceback" not in ran.stderr
    as_json = cli("--json", *filled)
    assert as_json.code == code
    envelope = as_json.json()
    assert envelope["ok"] is False
    assert message in envelope["error"]["message"]


def test_a_value_matching_no_ecosystem_is_named_with_the_closest(
    cli: Runner, small_ledger: Path, tmp_path: Path
) -> None:
    ran = cli(
        "export", "plan", "--tenant", "acme", "--ledger", str(small_ledger), "--selector", "ecosystem=PyPl"
    )
    assert ran.code == 0
    assert "warning: selector ecosystem=PyPl matches no known ecosystem (did you mean PyPI?)" in ran.stderr
    assert "takes nothing" in ran.stdout


def test_an_allowed_empty_export_is_dated_by_the_ledger_never_1970(
    cli: Runner, small_ledger: Path, tmp_path: Path
) -> None:
    ledger = str(small_ledger)
    newest = cli("export", "plan", "--tenant", "acme", "--ledger", ledger, "--json").json()["highWater"]
    assert newest and not newest.startswith("1970")
    empty = (
        *RUN[:7],
        ledger,
        "--out",
        str(tmp_path / "out"),
        "--selector",
        "id=NOPE-*",
        "--allow-empty",
        "--json",
    )
    ran = cli(*empty)
    assert ran.code == 0, ran.stderr
    summary = ran.json()
    assert summary["counts"] == {} or not any(summary["counts"].values())
    assert summary["generatedAt"] == newest
    dated = cli(
        *empty[:-1], "--as-of", "2026-01-02T03:04:05Z", "--out", str(tmp_path / "out2"), "--json"
    ).json()
    assert dated["generatedAt"] == "2026-01-02T03:04:05Z"
