"""Hostile bundles for verify, archive, decrypt's publish step and push: refused, named, contained."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from backports import zstd

from stella.bundle.manifest import build_manifest, export_id_for, parse_manifest
from stella.bundle.publish import new_staging, publish
from stella.canonical import dumps
from stella.errors import BundleIntegrityError
from stella.guards.ids import check_id
from tests.hostile.conftest import Run, stella
from tests.support import REPO, VENV_BIN, tree_digests


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, go_vulndb: Path) -> Path:
    """One real, unsigned json:raw bundle (folder and .tar.zst) of the Go vulndb records."""
    from stella.cli import main

    root = tmp_path_factory.mktemp("bundle")
    os.environ["STELLA_HOME"] = str(root / "home")
    try:
        assert (
            main(
                [
                    "ledger",
                    "ingest",
                    "--tenant",
                    "acme",
                    "--ingested-at",
                    "2026-11-01T00:00:00Z",
                    str(go_vulndb),
                ]
            )
            == 0
        )
        out = root / "out"
        assert (
            main(
                ["export", "run", "--tenant", "acme", "--profile", "json:raw", "--out", str(out), "--archive"]
            )
            == 0
        )
    finally:
        del os.environ["STELLA_HOME"]
    [folder] = [p for p in out.iterdir() if p.is_dir()]
    return folder


def _copy(bundle: Path, tmp_path: Path) -> Path:
    target = tmp_path / bundle.name
    shutil.copytree(bundle, target)
    return target


def _verify(capsys: pytest.CaptureFixture[str], target: Path) -> tuple[int, dict[str, object]]:
    run: Run = stella(capsys, "export", "verify", str(target), "--json")
    details = json.loads(run.stdout)["error"]["details"] if run.code else {}
    return run.code, details


def _edit_manifest(folder: Path, **fields: object) -> None:
    manifest = json.loads((folder / "export.json").read_bytes())
    manifest.update(fields)
    (folder / "export.json").write_bytes(dumps(manifest))


@pytest.mark.parametrize("export_id", ["../../x", "/srv/victim", "acme\n", "..", "a/b"])
def test_a_bundle_whose_export_id_names_a_path_fails_verify_and_archive(
    capsys: pytest.CaptureFixture[str], bundle: Path, tmp_path: Path, export_id: str
) -> None:
    folder = _copy(bundle, tmp_path / "in")
    _edit_manifest(folder, exportId=export_id)
    before = tree_digests(tmp_path)
    code, details = _verify(capsys, folder)
    assert (code, details["file"]) == (3, "export.json")
    run = stella(capsys, "export", "archive", str(folder), "--json")
    assert run.code == 3 and "exportId" in run.stderr
    assert tree_digests(tmp_path) == before  # nothing created, replaced or removed anywhere


def test_a_tenant_with_a_newline_fails_verify(
    capsys: pytest.CaptureFixture[str], bundle: Path, tmp_path: Path
) -> None:
    folder = _copy(bundle, tmp_path)
    _edit_manifest(folder, tenant="acme\n")
    assert _verify(capsys, folder) == (3, _verify(capsys, folder)[1])
    assert _verify(capsys, folder)[1]["field"] == "export.json tenant"


def test_publish_checks_the_id_where_it_becomes_a_path(tmp_path: Path) -> None:
    """decrypt and run publish through here: ``--overwrite`` can never reach outside --out."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("precious")
    out = tmp_path / "out"
    staging = new_staging(str(out))
    for hostile in ("../victim", str(victim), "acme\n"):
        with pytest.raises(BundleIntegrityError):
            publish(staging, hostile, overwrite=True)
    assert (victim / "keep").read_text() == "precious"
    assert staging.is_dir()


def test_parse_manifest_refuses_duplicate_keys(bundle: Path) -> None:
    text = (bundle / "export.json").read_bytes()
    assert parse_manifest(text)[0]["tenant"] == "acme"
    with pytest.raises(BundleIntegrityError, match="duplicate key 'tenant'"):
        parse_manifest(text[:-1] + b',"tenant":"other"}')


def test_export_ids_stay_unique_for_the_longest_tenants() -> None:
    tenant = "t" * 63
    profile = {"kind": "trivy", "variant": "java-db", "name": "trivy:java-db", "revision": "r1"}
    ids = {export_id_for(tenant, profile, f"sha256:{n}" + "0" * 63) for n in (1, 2)}
    assert len(ids) == 2 and all(check_id(i, "exportId") for i in ids)
    assert all(i.endswith(("-100000000000", "-200000000000")) for i in ids)  # the hash is never cut
    short = build_manifest(
        tenant="acme",
        profile={"kind": "json", "variant": "raw", "name": "json:raw", "revision": "r1"},
        selectors={},
        generated_at="2026-01-01T00:00:00Z",
        contents=[],
        counts={},
    )
    assert short["exportId"] == "acme-json-raw-" + short["rerunHash"].split(":")[1][:12]


def test_a_truncated_or_padded_archive_fails_verify_with_3(
    capsys: pytest.CaptureFixture[str], bundle: Path, tmp_path: Path
) -> None:
    archive = bundle.parent / f"{bundle.name}.tar.zst"
    data = archive.read_bytes()
    cut = tmp_path / "cut.tar.zst"
    cut.write_bytes(data[:-1])
    code, details = _verify(capsys, cut)
    assert code == 3 and details["reason"] in {"truncated", "corrupt"}
    padded = tmp_path / "padded.tar.zst"
    padded.write_bytes(data + b"\0garbage")
    code, details = _verify(capsys, padded)
    assert (code, details["reason"], details["file"]) == (3, "trailing-data", "(end of archive)")
    assert _verify(capsys, archive) == (0, {})


def _tar_zst(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data))
    return zstd.compress(buffer.getvalue())


def test_unsafe_members_are_named_in_details_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    evil = tarfile.TarInfo("../evil.json")
    evil.size = 2
    link = tarfile.TarInfo("data/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    for name, members in (("a", [(evil, b"{}")]), ("b", [(link, b"")])):
        archive = tmp_path / f"{name}.tar.zst"
        archive.write_bytes(_tar_zst(members))
        code, details = _verify(capsys, archive)
        assert code == 3 and details["file"] == members[0][0].name


def test_special_files_in_a_bundle_folder_are_refused_without_hanging(bundle: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cases = {
        "fifo": lambda folder: os.mkfifo(folder / "data" / "zz.fifo"),
        "linked-folder": lambda folder: (folder / "data" / "more").symlink_to(tmp_path),
        "linked-file": lambda folder: (folder / "zz.json").symlink_to(folder / "export.json"),
    }
    for name, plant in cases.items():
        folder = _copy(bundle, tmp_path / name)
        plant(folder)
        done = subprocess.run(
            [str(VENV_BIN / "stella"), "export", "verify", str(folder), "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        details = json.loads(done.stdout)["error"]["details"]
        assert (done.returncode, details["reason"]) == (3, "not-regular-file"), name


def test_verify_stops_hashing_at_the_declared_size(
    capsys: pytest.CaptureFixture[str], bundle: Path, tmp_path: Path
) -> None:
    folder = _copy(bundle, tmp_path)
    manifest = json.loads((folder / "export.json").read_bytes())
    shard = folder / manifest["contents"][0]["path"]
    with shard.open("r+b") as handle:
        handle.truncate(64 << 30)  # a sparse 64 GiB file: hashing it would take minutes
    code, details = _verify(capsys, folder)
    assert code == 3 and details["file"] == manifest["contents"][0]["path"]
    assert "not hashed further" in str(details["reason"])


def test_symlink_loop_as_the_bundle_argument(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    run = stella(capsys, "export", "verify", str(tmp_path / "loop"))
    assert run.code == 2 and "symlink loop" in run.stderr


def test_strict_json_in_trust_roots(capsys: pytest.CaptureFixture[str], bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "root.json"
    root.write_text('{"schema": "x", "keys": [], "keys": []}')
    run = stella(capsys, "export", "verify", str(bundle), "--trust-root", str(root))
    assert run.code == 2 and "duplicate key 'keys'" in run.stderr
    os.mkfifo(tmp_path / "fifo.json")
    run = stella(capsys, "export", "verify", str(bundle), "--trust-root", str(tmp_path / "fifo.json"))
    assert run.code == 2 and "FIFO" in run.stderr
