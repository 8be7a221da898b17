"""Exit codes and messages that need more than one command: Ctrl-C, trust failures, recipients files."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from stella.cli import main
from tests.cli.conftest import Runner
from tests.cli.test_misuse import _key_files
from tests.support import VENV_BIN, processes_naming


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_during_an_export_exits_130_and_publishes_nothing(workers: str, tmp_path: Path) -> None:
    """Ctrl-C reaches the terminal's whole process group: the command and, with --workers 2, its workers."""
    # Big enough that the export is surely still running when Ctrl-C comes half a second after its header:
    # the small ledger's export can finish within a fraction of a second on an idle machine.
    ledger = tmp_path / "ledger"
    assert main(["ledger", "generate", "--tenant", "acme", "--records", "20000", "--advisories-only",
                 "--workers", "1", "--ledger", str(ledger), "-q"]) == 0  # fmt: skip
    out = tmp_path / "out"
    process = subprocess.Popen(
        [str(VENV_BIN / "stella"), "export", "run", "--tenant", "acme", "--profile", "trivy:db",
         "--ledger", str(ledger), "--out", str(out), "--workers", workers],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "STELLA_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert process.stderr is not None
    header = process.stderr.readline()  # "exporting acme with trivy:db ..." once the pipeline starts
    assert "exporting acme" in header, header
    time.sleep(0.5)  # into the pipeline, where Beam may turn the KeyboardInterrupt into another error
    os.killpg(process.pid, signal.SIGINT)
    _stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not [p for p in out.iterdir() if not p.name.startswith(".")]  # nothing that looks published
    assert processes_naming(str(out)) == set()  # no worker outlives the command


def test_no_trusted_via_after_a_trust_failure(cli: Runner, small_ledger: Path, tmp_path: Path) -> None:
    _key_files(tmp_path)
    out = tmp_path / "out"
    signed = cli(
        "export", "run", "--tenant", "acme", "--profile", "json:raw", "--ledger", str(small_ledger),
        "--out", str(out), "--sign-key", str(tmp_path / "k.key"), "-q", "--json",
    )  # fmt: skip
    assert signed.code == 0, signed.stderr
    bundle = signed.json()["bundle"]
    root = tmp_path / "root.json"
    assert (
        cli("keys", "trust-root", str(tmp_path / "k.pub"), "--out", str(root), "--tenant", "other").code == 0
    )
    refused = cli("export", "verify", bundle, "--trust-root", str(root))
    assert refused.code == 5, refused.stdout + refused.stderr
    assert "trusted via" not in refused.stdout and "NOT accepted" in refused.stdout
    accepted = cli("export", "verify", bundle, "--key", str(tmp_path / "k.pub"))
    assert accepted.code == 0 and "trusted via" in accepted.stdout


def test_recipients_file_encrypts_like_age_r(cli: Runner, small_ledger: Path, tmp_path: Path) -> None:
    import pyrage

    identity = pyrage.x25519.Identity.generate()
    recipients = tmp_path / "recipients.txt"
    recipients.write_text(f"# the receiving site\n{identity.to_public()}\n\n")
    ran = cli(
        "export", "run", "--tenant", "acme", "--profile", "json:raw", "--ledger", str(small_ledger),
        "--out", str(tmp_path / "out"), "-R", str(recipients), "-q", "--json",
    )  # fmt: skip
    assert ran.code == 0, ran.stderr
    assert ran.json()["encryption"] == "age"
    (tmp_path / "id.key").write_text(f"{identity}\n")
    opened = cli(
        "export", "decrypt", ran.json()["bundle"], "--identity", str(tmp_path / "id.key"),
        "--out", str(tmp_path / "plain"), "--json",
    )  # fmt: skip
    assert opened.code == 0, opened.stderr
    assert opened.json()["decryptedFiles"] >= 1
