"""``stella demo``: the README's first command, through the same request path as ``export run``."""

from __future__ import annotations

import io
import json
from pathlib import Path

from stella.bundle.verify import verify_bundle
from stella.cli import build_parser
from stella.cli.export_cmd import run_demo
from stella.cli.output import Output
from stella.cli.progress import Progress


def test_demo_exports_and_verifies_without_touching_its_arguments(tmp_path: Path) -> None:
    argv = ["demo", "--ledger", str(tmp_path / "ledger"), "--out", str(tmp_path / "out"), "--records", "120"]
    args = build_parser().parse_args(argv)
    summaries = []
    for _ in range(2):  # the ledger is made once; the second run finds the same bundle
        stdout = io.StringIO()
        args.output = Output(command="demo", json=True, stream=stdout)
        args.progress = Progress.for_terminal(quiet=True, stream=io.StringIO())
        before = dict(vars(args))
        assert run_demo(args) == 0
        assert vars(args) == before
        summaries.append(json.loads(stdout.getvalue()))
    first, second = summaries
    assert first["verified"] is True and first["profile"] == "json:raw" and first["tenant"] == "demo"
    assert verify_bundle(Path(first["bundle"])).report.ok
    assert second["unchanged"] is True and second["exportId"] == first["exportId"]
