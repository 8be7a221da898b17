"""mirror:delta's base on shared storage: the driver checks and stages the members workers read.

The base chain of the signed mirror history (full0 -> delta1 -> delta2) is staged on the
GCS emulator; what workers compute from the staged copies alone must be the state a
fresh full of the same selection (full2) holds. A tampered member anywhere in the chain
is refused before anything is staged, and a missing link is ERR_EXPORT_BASE_MISSING.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.mirror import BASE_DIR, MirrorBase, parse_mirror_options, resolve_base
from pipelines.mirror_delta import PROFILE
from stella.adapters.mirror.base import base_digests, stage_chain
from stella.adapters.mirror.delta import CHANGES_PATH
from stella.bundle.request import new_request
from stella.errors import BaseMissingError, BundleIntegrityError
from tests.integration.conftest import Ran
from tests.integration.mirror_fixtures import MirrorHistory
from tests.services.gcs import create_bucket, gcs_client, gcs_env, list_blobs

pytestmark = pytest.mark.gcs

BUCKET = "mirror-base"


@pytest.fixture(scope="module")
def bucket(gcs: str) -> str:
    create_bucket(gcs, BUCKET)
    return BUCKET


@pytest.fixture(autouse=True)
def _emulator(gcs: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in gcs_env(gcs).items():
        monkeypatch.setenv(name, value)


def _base(history: MirrorHistory, reference: str | Path, out: Path | None = None) -> MirrorBase:
    request = new_request(
        tenant="acme",
        profile=PROFILE,
        ledger_root=str(history.ledger),
        out_dir=str(out or history.out),
        options=[f"base={reference}"],
    )
    return resolve_base(request, parse_mirror_options(request.options, delta=True))


def _folder(archive: Path) -> Path:
    return archive.with_name(archive.name.removesuffix(".tar.zst"))


def _record_index(full: Path) -> dict[bytes, str]:
    manifest = json.loads((full / "export.json").read_bytes())
    found: dict[bytes, str] = {}
    for entry in manifest["mirror"]["recordIndex"]:
        table = pq.read_table(full / entry["path"], columns=["key", "lineDigest"])
        found.update(zip(table["key"].to_pylist(), table["lineDigest"].to_pylist(), strict=True))
    return found


def test_workers_get_the_base_state_from_the_staged_copies_alone(
    mirror_history: MirrorHistory, gcs: str, bucket: str
) -> None:
    root = f"gs://{bucket}/staging/run-1/.runs/{BASE_DIR}"
    base = _base(mirror_history, mirror_history.delta2)  # an archive; its chain is looked up in --out
    links = stage_chain(base.chain, root)

    ids = [_folder(p).name for p in (mirror_history.full0, mirror_history.delta1, mirror_history.delta2)]
    assert [link.export_id for link in links] == ids and [link.full for link in links] == [True, False, False]
    index = json.loads((_folder(mirror_history.full0) / "export.json").read_bytes())["mirror"]["recordIndex"]
    expected = [f"000-{ids[0]}/{e['path']}" for e in index]
    expected += [f"001-{ids[1]}/{CHANGES_PATH}", f"002-{ids[2]}/{CHANGES_PATH}"]
    prefix = f"staging/run-1/.runs/{BASE_DIR}/"
    assert list_blobs(gcs, bucket, prefix) == sorted(prefix + name for name in expected)
    client = gcs_client(gcs).bucket(bucket)
    for link in links:
        for staged in link.files:
            assert staged.url.startswith(root + "/")
            data = client.blob(staged.url.removeprefix(f"gs://{bucket}/")).download_as_bytes()
            assert "sha256:" + hashlib.sha256(data).hexdigest() == staged.digest

    # What the workers compute from those copies is the state a fresh full of the same selection holds.
    newest = _record_index(_folder(mirror_history.full2))
    removed = set(_record_index(_folder(mirror_history.full0))) - set(newest)
    assert removed  # the chain's tombstones are exercised too
    assert base_digests(links, [*newest, *removed]) == newest

    # A staged copy that changed after the driver checked it is refused on the worker.
    changes = links[1].files[0]
    client.blob(changes.url.removeprefix(f"gs://{bucket}/")).upload_from_string(b"not the change list")
    with pytest.raises(BundleIntegrityError, match="staged copy"):
        base_digests(links, newest)


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


def _first_record_index(full: Path, _delta: Path) -> Path:
    manifest = json.loads((full / "export.json").read_bytes())
    return full / manifest["mirror"]["recordIndex"][0]["path"]


def _change_list(_full: Path, delta: Path) -> Path:
    return delta / CHANGES_PATH


@pytest.mark.parametrize("member", [_first_record_index, _change_list])
def test_a_tampered_base_member_is_refused_before_anything_is_staged(
    mirror_history: MirrorHistory,
    gcs: str,
    bucket: str,
    tmp_path: Path,
    member: Callable[[Path, Path], Path],
) -> None:
    full, delta = (_folder(p) for p in (mirror_history.full0, mirror_history.delta1))
    for bundle in (full, delta):
        shutil.copytree(bundle, tmp_path / bundle.name)
    _flip_last_byte(member(tmp_path / full.name, tmp_path / delta.name))
    base = _base(mirror_history, tmp_path / delta.name, out=tmp_path)
    root = f"gs://{bucket}/staging/{tmp_path.name}"
    with pytest.raises(BundleIntegrityError, match="does not match its manifest digest"):
        stage_chain(base.chain, root)
    assert list_blobs(gcs, bucket, f"staging/{tmp_path.name}/") == []


def test_a_missing_link_of_the_chain_is_base_missing(
    mirror_history: MirrorHistory, bucket: str, tmp_path: Path, cli: Callable[..., Ran]
) -> None:
    lone = tmp_path / "lone"  # delta2 without delta1, neither in --out nor beside it
    lone.mkdir()
    shutil.copy(mirror_history.delta2, lone)
    with pytest.raises(BaseMissingError, match=_folder(mirror_history.delta1).name):
        _base(mirror_history, lone / mirror_history.delta2.name, out=tmp_path / "out")
    out = tmp_path / "out"
    ran = cli(
        "export", "run", "--tenant", "acme", "--profile", "mirror:delta", "--ledger", str(mirror_history.ledger),
        "--out", str(out), "--staging", f"gs://{bucket}/staging/missing",
        "--option", f"base={lone / mirror_history.delta2.name}",
    )  # fmt: skip
    assert ran.returncode == 17 and "ERR_EXPORT_BASE_MISSING" in ran.stderr, ran.stderr
    assert not any(out.glob("acme-mirror-delta-*"))
