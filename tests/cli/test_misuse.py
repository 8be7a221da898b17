"""Typos, empty selections and misuses: each exits with its documented code and says why.

One table, run in-process. ``{ledger}``, ``{bundle}`` and ``{tmp}`` are filled with a small
real ledger, a bundle exported from it and a scratch folder. Each row also runs with
``--json`` and checks the failure envelope against the command's schema.
"""

from __future__ import annotations

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
