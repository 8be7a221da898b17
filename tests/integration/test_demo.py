"""``stella demo``: the README's first command, through the same request path as ``export run``."""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import pytest

from stella.bundle.verify import verify_bundle
from stella.cli.export_cmd import run_demo


def test_demo_exports_and_verifies_without_touching_its_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = argparse.Namespace(
        ledger=str(tmp_path / "ledger"), out=str(tmp_path / "out"), records=120, json=True
    )
    before = copy.deepcopy(vars(args))
    assert run_demo(args) == 0
    assert vars(args) == before
    summary = json.loads(capsys.readouterr().out)
    assert summary["verified"] is True and summary["profile"] == "json:raw" and summary["tenant"] == "demo"
    assert verify_bundle(Path(summary["bundle"])).report.ok
    assert run_demo(args) == 0  # the ledger is made once; the same bundle is found again
    assert json.loads(capsys.readouterr().out)["unchanged"] is True
