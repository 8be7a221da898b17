"""SIGKILL the importer at 22 points spread over its work: the mirror is always the old or the new state,
never a mix, and the next import succeeds.

The points are counted, not timed: an importer process traces line events inside the mirror code
(``stella/mirror``, ``stella/adapters/mirror``) and kills itself with SIGKILL at the N-th one, so the points
spread evenly over unpacking, checking, rebuilding, fsyncing and switching whatever the machine's speed. One
driver loads the modules once and forks one importer process per point (each killed for real), instead of
starting 23 interpreters.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stella.bundle.trust import load_trust_root
from stella.mirror.importer import import_bundle
from tests.integration.mirror_fixtures import MirrorHistory, mirror_import
from tests.support import VENV_BIN, tree_digests

pytestmark = pytest.mark.slow

DRIVER = """
import json, os, signal, sys
from datetime import UTC, datetime
from pathlib import Path
from stella.bundle.trust import load_trust_root
from stella.mirror.importer import import_bundle

bundle, root, jobs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
WATCHED = (os.sep + os.path.join("stella", "mirror") + os.sep, os.sep + os.path.join("adapters", "mirror") + os.sep)
trust = load_trust_root(Path(root))

def run(mirror, kill_at):
    count = 0

    def local(frame, event, arg):
        nonlocal count
        if event == "line":
            count += 1
            if count == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        return local

    def tracer(frame, event, arg):
        return local if any(w in frame.f_code.co_filename for w in WATCHED) else None

    sys.settrace(tracer)
    import_bundle(Path(bundle), Path(mirror), trust=trust, now=datetime(2026, 11, 30, tzinfo=UTC))
    sys.settrace(None)
    return count

# One import per forked child, modules loaded once: each child is a whole importer process to kill.
for mirror, kill_at in jobs:
    pid = os.fork()
    if pid == 0:
        try:
            print(json.dumps({"mirror": mirror, "lines": run(mirror, kill_at)}), flush=True)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        print(json.dumps({"mirror": mirror, "signal": os.WTERMSIG(status)}), flush=True)
"""
NOW = datetime(2026, 11, 30, tzinfo=UTC)


def _drive(driver: Path, bundle: Path, root: Path, jobs: list[tuple[str, int]]) -> list[dict[str, Any]]:
    """Each (mirror, kill_at) job in its own forked importer process: what became of it, in order."""
    result = subprocess.run(
        [str(VENV_BIN / "python"), str(driver), str(bundle), str(root), json.dumps(jobs)],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    outcomes = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [o["mirror"] for o in outcomes] == [mirror for mirror, _ in jobs], result.stderr[-2000:]
    return outcomes


def test_the_mirror_is_old_or_new_whenever_the_importer_dies(
    mirror_history: MirrorHistory, tmp_path: Path
) -> None:
    h = mirror_history
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    template, reference = tmp_path / "template", tmp_path / "reference"
    assert mirror_import(h.full0, template, h.trust_root) == (0, "")
    shutil.copytree(template, reference, symlinks=True)
    (counted,) = _drive(driver, h.delta1, h.trust_root, [(str(reference), 0)])
    total = int(counted["lines"])
    assert total > 1000
    old = tree_digests(template / "current" / "data")
    new = tree_digests(reference / "current" / "data")
    trust = load_trust_root(h.trust_root)
    points = range(1, 23)
    mirrors = {point: tmp_path / f"mirror-{point}" for point in points}
    for mirror in mirrors.values():
        shutil.copytree(template, mirror, symlinks=True)
    killed = _drive(driver, h.delta1, h.trust_root, [(str(mirrors[p]), p * total // 23) for p in points])
    outcomes = {"old": 0, "new": 0}
    for point, death in zip(points, killed, strict=True):
        assert death.get("signal") == signal.SIGKILL, (point, death)
        mirror = mirrors[point]
        state = json.loads((mirror / "current" / "mirror.json").read_bytes())
        data = tree_digests(mirror / "current" / "data")
        if state["exportId"] == h.delta1.name.removesuffix(".tar.zst"):
            assert data == new, point
            outcomes["new"] += 1
            following = h.delta2
        else:
            assert data == old, point
            outcomes["old"] += 1
            following = h.delta1
        import_bundle(following, mirror, trust=trust, now=NOW)  # the next import succeeds
        assert not list(mirror.glob(".staging-*"))
        assert len(list((mirror / "states").iterdir())) == 1
        shutil.rmtree(mirror)
    assert outcomes["old"] > 0 and sys.platform.startswith("linux")
