"""Trivy metadata.json, the deterministic layer tarball and the OCI image layout."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from stella.adapters.trivy.artifact import (
    OCI_MANIFEST_MEDIA_TYPE,
    TITLE_ANNOTATION,
    TRIVY_CONFIG_MEDIA_TYPE,
    TRIVY_DB,
    TRIVY_JAVA_DB,
    trivy_metadata,
    write_deterministic_tar_gz,
    write_oci_layout,
)
from stella.errors import ConflictError, UsageError
from stella.gzipstream import BLOCK_SIZE

AS_OF = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def tree_digests(root: Path) -> dict[str, str]:
    """Every file under ``root`` (relative path -> sha256): what 'byte-identical' means here."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


# -- metadata.json ------------------------------------------------------------------------


def test_metadata_shape_and_times() -> None:
    data = trivy_metadata(AS_OF, AS_OF + timedelta(hours=24), None)
    assert data == (
        b'{"DownloadedAt":"0001-01-01T00:00:00Z","NextUpdate":"2024-05-02T12:00:00Z",'
        b'"UpdatedAt":"2024-05-01T12:00:00Z","Version":2}'
    )
    local = datetime(2024, 5, 1, 14, 0, 0, 250000, tzinfo=timezone(timedelta(hours=2)))
    placed = json.loads(trivy_metadata(AS_OF, AS_OF + timedelta(days=1), local))
    assert placed["DownloadedAt"] == "2024-05-01T12:00:00.25Z"  # UTC, Go's trimmed fraction


def test_metadata_rejects_naive_times_and_inverted_windows() -> None:
    with pytest.raises(UsageError):
        trivy_metadata(datetime(2024, 5, 1), AS_OF, None)  # naive: the point of the test
    with pytest.raises(UsageError):
        trivy_metadata(AS_OF, AS_OF - timedelta(seconds=1), None)


# -- tar.gz --------------------------------------------------------------------------------


def _members(tmp_path: Path) -> list[tuple[str, Path | bytes]]:
    db = tmp_path / "src" / "trivy.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(bytes(range(256)) * 64)
    return [("trivy.db", db), ("metadata.json", trivy_metadata(AS_OF, AS_OF + timedelta(days=1), None))]


def test_tarball_is_byte_identical_whatever_the_order_time_or_umask(tmp_path: Path) -> None:
    members = _members(tmp_path)
    first = write_deterministic_tar_gz(tmp_path / "a" / "db.tar.gz", members)
    src = members[0][1]
    assert isinstance(src, Path)
    os.utime(src, (1, 1))
    os.chmod(src, 0o600)
    old_umask = os.umask(0o077)
    try:
        second = write_deterministic_tar_gz(tmp_path / "b" / "db.tar.gz", list(reversed(members)))
    finally:
        os.umask(old_umask)
    assert first == second
    a, b = (tmp_path / "a" / "db.tar.gz").read_bytes(), (tmp_path / "b" / "db.tar.gz").read_bytes()
    assert a == b
    assert first == "sha256:" + hashlib.sha256(a).hexdigest()
    assert oct((tmp_path / "b" / "db.tar.gz").stat().st_mode & 0o777) == "0o644"


def test_tarball_headers_carry_no_host_facts(tmp_path: Path) -> None:
    write_deterministic_tar_gz(tmp_path / "db.tar.gz", _members(tmp_path))
    raw = (tmp_path / "db.tar.gz").read_bytes()
    assert raw[:3] == b"\x1f\x8b\x08"
    assert raw[3] == 0  # FLG: no FNAME, no FCOMMENT, no FEXTRA
    assert raw[4:8] == b"\x00\x00\x00\x00"  # MTIME 0
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(raw)), mode="r:") as tar:
        infos = tar.getmembers()
        assert [info.name for info in infos] == ["metadata.json", "trivy.db"]  # sorted, flat
        for info in infos:
            assert (info.uid, info.gid, info.uname, info.gname) == (0, 0, "", "")
            assert (info.mode, info.mtime, info.type) == (0o644, 0, tarfile.REGTYPE)
            assert info.pax_headers == {}
        assert tar.extractfile("trivy.db").read() == bytes(range(256)) * 64  # type: ignore[union-attr]
    assert b"PaxHeader" not in gzip.decompress(raw)


@pytest.mark.parametrize("name", ["db/trivy.db", "../x", "", ".", "a" * 101])
def test_tarball_refuses_non_flat_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(UsageError):
        write_deterministic_tar_gz(tmp_path / "x.tar.gz", [(name, b"x")])
    assert not (tmp_path / "x.tar.gz").exists()


def test_tarball_refuses_duplicates_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        write_deterministic_tar_gz(tmp_path / "x.tar.gz", [("a", b"1"), ("a", b"2")])
    missing = tmp_path / "missing.db"
    with pytest.raises(FileNotFoundError):
        write_deterministic_tar_gz(tmp_path / "y.tar.gz", [("trivy.db", missing)])
    assert list(tmp_path.iterdir()) == []


# -- OCI layout ----------------------------------------------------------------------------


def _layout(tmp_path: Path, name: str, spec_java: bool = False) -> Path:
    spec = TRIVY_JAVA_DB if spec_java else TRIVY_DB
    layer = tmp_path / f"{name}.tar.gz"
    write_deterministic_tar_gz(layer, [(spec.db_file, b"db bytes"), ("metadata.json", b"{}")])
    write_oci_layout(
        tmp_path / name,
        layer_path=layer,
        layer_media_type=spec.layer_media_type,
        config_media_type=TRIVY_CONFIG_MEDIA_TYPE,
        title=spec.title,
        annotations={"org.opencontainers.image.created": "2024-05-01T12:00:00Z"},
        tag=spec.tag,
    )
    return tmp_path / name


@pytest.mark.parametrize("java", [False, True])
def test_layout_has_the_shape_trivy_accepts(tmp_path: Path, java: bool) -> None:
    spec = TRIVY_JAVA_DB if java else TRIVY_DB
    layout = _layout(tmp_path, "layout", spec_java=java)
    assert json.loads((layout / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_bytes())
    (entry,) = index["manifests"]
    assert entry["mediaType"] == OCI_MANIFEST_MEDIA_TYPE
    assert entry["annotations"] == {"org.opencontainers.image.ref.name": spec.tag}
    manifest_bytes = (layout / "blobs" / "sha256" / entry["digest"].split(":")[1]).read_bytes()
    assert len(manifest_bytes) == entry["size"]
    manifest = json.loads(manifest_bytes)
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == OCI_MANIFEST_MEDIA_TYPE
    assert manifest["config"]["mediaType"] == TRIVY_CONFIG_MEDIA_TYPE
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == spec.layer_media_type
    assert layer["annotations"] == {TITLE_ANNOTATION: spec.title}
    assert manifest["annotations"] == {"org.opencontainers.image.created": "2024-05-01T12:00:00Z"}
    for blob in (layout / "blobs" / "sha256").iterdir():  # content-addressed, nothing else
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    assert (layout / "blobs" / "sha256" / layer["digest"].split(":")[1]).read_bytes() == (
        tmp_path / "layout.tar.gz"
    ).read_bytes()


def test_layout_is_byte_identical_across_builds(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first = tree_digests(_layout(tmp_path / "one", "layout"))
    second = tree_digests(_layout(tmp_path / "two", "layout"))
    assert first == second
    blobs = {name for name in first if name.startswith("blobs/sha256/")}
    assert set(first) - blobs == {"index.json", "oci-layout"}
    assert len(blobs) == 3  # manifest, config, layer


def test_layout_refuses_to_overwrite(tmp_path: Path) -> None:
    layout = _layout(tmp_path, "layout")
    with pytest.raises(ConflictError):
        write_oci_layout(
            layout,
            layer_path=tmp_path / "layout.tar.gz",
            layer_media_type=TRIVY_DB.layer_media_type,
            title="db.tar.gz",
            tag="2",
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layout", "layout.tar.gz"]


def test_tarball_bytes_do_not_depend_on_the_thread_count(tmp_path: Path) -> None:
    """The run's worker count compresses the layer; the layer is the same for every count."""
    db = tmp_path / "src" / "trivy.db"
    db.parent.mkdir()
    page = bytes(range(256)) * 8 + bytes(2048)
    db.write_bytes(b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() + page for i in range(1100)))
    assert db.stat().st_size > 2 * BLOCK_SIZE  # several compressor blocks, the last one partial
    members: list[tuple[str, Path | bytes]] = [("trivy.db", db), ("metadata.json", b"{}")]
    digests = {
        threads: write_deterministic_tar_gz(tmp_path / f"t{threads}.tar.gz", members, threads=threads)
        for threads in (1, 2, 3)
    }
    assert len(set(digests.values())) == 1, digests
    with tarfile.open(tmp_path / "t3.tar.gz", mode="r:gz") as tar:
        assert tar.extractfile("trivy.db").read() == db.read_bytes()  # type: ignore[union-attr]
