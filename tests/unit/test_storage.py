"""Moving a run's staged files between a worker, shared storage and the driver."""

from __future__ import annotations

from pathlib import Path

import pytest

from stella import storage


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_upload_then_download_round_trips_and_skips_the_runs_folder(tmp_path: Path) -> None:
    source = tmp_path / "scratch"
    (source / "data" / "db").mkdir(parents=True)
    (source / "data" / "db" / "trivy.db").write_bytes(b"\x00bolt")
    (source / "export.json").write_bytes(b"{}")
    shared = str(tmp_path / "shared" / "run")
    assert storage.upload_tree(source, shared) == ["data/db/trivy.db", "export.json"]
    storage.write_atomic(storage.join(shared, ".runs", "run-1.bin"), b"sorted run")
    driver = tmp_path / "driver"
    driver.mkdir()
    assert storage.download_tree(shared, driver, skip=".runs") == ["data/db/trivy.db", "export.json"]
    assert _tree(driver) == _tree(source)
    storage.remove_tree(shared)
    assert not storage.exists(shared)


def test_local_folder_for_a_local_root_is_the_root_itself(tmp_path: Path) -> None:
    root = tmp_path / "staging"
    with storage.local_folder_for(str(root)) as folder:
        (folder / "file").write_bytes(b"x")
    assert folder == root and (root / "file").read_bytes() == b"x"


def test_local_folder_for_uploads_nothing_when_the_step_fails(tmp_path: Path) -> None:
    # a remote root is exercised on the GCS emulator (tests/integration/test_dask_runner.py);
    # here the failure path: the scratch folder is removed, nothing is uploaded
    with pytest.raises(RuntimeError), storage.local_folder_for("gs://bucket/never-contacted") as folder:
        (folder / "partial").write_bytes(b"half")
        raise RuntimeError("step failed")
    assert not folder.exists()
