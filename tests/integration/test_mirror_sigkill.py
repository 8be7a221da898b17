"""SIGKILL the importer at 22 points spread over its work: the mirror is always the old or the new state,
never a mix, and the next import succeeds.

The points are counted, not timed: a driver process traces line events inside the mirror code
(``stella/mirror``, ``stella/adapters/mirror``) and kills itself with SIGKILL at the N-th one, so the points
spread evenly over unpacking, checking, rebuilding, fsyncing and switching whatever the machine's speed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stella.bundle.trust import load_trust_root
from stella.mirror.importer import import_bundle
from tests.integration.mirror_fixtures import MirrorHistory, mirror_import
from tests.support import VENV_BIN, tree_digests

pytestmark = pytest.mark.slow

DRIVER = """
import os, signal, sys
from datetime import UTC, datetime
from pathlib import Path
from stella.bundle.trust import load_trust_root
from stella.mirror.importer import import_bundle

bundle, mirror, root, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
count = 0
WATCHED = (os.sep + os.path.join("stella", "mirror") + os.sep, os.sep + os.path.join("adapters", "mirror") + os.sep)

def local(frame, event, arg):
    global count
    if event == "line":
        count += 1
        if count == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    return local

def tracer(frame, event, arg):
    return local if any(w in frame.f_code.co_filename for w in WATCHED) else None

trust = load_trust_root(Path(root))
sys.settrace(tracer)
import_bundle(Path(bundle), Path(mirror), trust=trust, now=datetime(2026, 11, 30, tzinfo=UTC))
sys.settrace(None)
print(count)
"""
NOW = datetime(2026, 11, 30, tzinfo=UTC)


def _drive(
    driver: Path, bundle: Path, mirror: Path, root: Path, kill_at: int
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "python"), str(driver), str(bundle), str(mirror), str(root), str(kill_at)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def test_the_mirror_is_old_or_new_whenever_the_importer_dies(
    mirror_history: MirrorHistory, tmp_path: Path
) -> None:
    h = mirror_history
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    template, reference = tmp_path / "template", tmp_path / "reference"
    assert mirror_import(h.full0, template, h.trust_root) == (0, "")
    shutil.copytree(template, reference, symlinks=True)
    counted = _drive(driver, h.delta1, reference, h.trust_root, 0)
    assert counted.returncode == 0, counted.stderr
    total = int(counted.stdout.strip().splitlines()[-1])
    assert total > 1000
    old = tree_digests(template / "current" / "data")
    new = tree_digests(reference / "current" / "data")
    trust = load_trust_root(h.trust_root)
    outcomes = {"old": 0, "new": 0}
    for point in range(1, 23):
        mirror = tmp_path / f"mirror-{point}"
        shutil.copytree(template, mirror, symlinks=True)
        killed = _drive(driver, h.delta1, mirror, h.trust_root, point * total // 23)
        assert killed.returncode == -9, (point, killed.returncode, killed.stderr[-2000:])
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
