"""Hostile archives against ``stella mirror import``: each refused with a clear error, the mirror untouched,
nothing written outside it (research §5). The corpus is built here from a real signed bundle."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from tests.integration.mirror_fixtures import MirrorHistory, mirror_digest, mirror_import
from tests.support import tree_digests

Member = tuple[tarfile.TarInfo, bytes | None]


def _info(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.linkname, info.mode = size, kind, link, 0o644
    return info


def _members(bundle: Path) -> list[Member]:
    return [
        (_info(path.relative_to(bundle).as_posix(), path.stat().st_size), path.read_bytes())
        for path in sorted(bundle.rglob("*"))
        if path.is_file()
    ]


def _write(target: Path, members: list[Member]) -> Path:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    target.write_bytes(zstandard.ZstdCompressor(level=3).compress(raw.getvalue()))
    return target


def _bomb(target: Path, members: list[Member]) -> Path:
    """A 512 MiB member of zeros: a few hundred KB compressed, refused from its header."""
    size = 512 << 20
    with (
        target.open("wb") as out,
        zstandard.ZstdCompressor(level=3).stream_writer(out) as zout,
        tarfile.open(fileobj=zout, mode="w|", format=tarfile.GNU_FORMAT) as tar,
    ):
        tar.addfile(_info("data/raw/bomb.jsonl.zst", size), _Zeros(size))
        for info, data in members:
            tar.addfile(info, io.BytesIO(data or b""))
    return target


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._left)
        buffer[:n] = bytes(n)
        self._left -= n
        return n


def _edited(bundle: Path, tmp: Path, edit: Callable[[Path], None]) -> Path:
    copy = tmp / "edited" / bundle.name
    shutil.copytree(bundle, copy)
    edit(copy)
    return _write(tmp / "edited.tar.zst", _members(copy))


def _lie_in_manifest(folder: Path) -> None:
    manifest = json.loads((folder / "export.json").read_bytes())
    manifest["contents"][0]["bytes"] += 1
    (folder / "export.json").write_bytes(json.dumps(manifest).encode())


def _tamper_payload(folder: Path) -> None:
    shard = sorted((folder / "data" / "raw").rglob("*.jsonl.zst"))[0]
    shard.write_bytes(shard.read_bytes()[:-1] + b"\x00")


CASES: dict[str, tuple[str, Callable[[Path, Path, MirrorHistory], Path]]] = {
    "dotdot": (
        "ERR_EXPORT_CHECKSUM",
        lambda b, t, h: _write(t / "a.tar.zst", [(_info("../evil", 4), b"evil"), *_members(b)]),
    ),
    "absolute": (
        "ERR_EXPORT_CHECKSUM",
        lambda b, t, h: _write(t / "a.tar.zst", [(_info(str(t / "evil-abs"), 4), b"evil"), *_members(b)]),
    ),
    "symlink": (
        "ERR_EXPORT_CHECKSUM",
        lambda b, t, h: _write(
            t / "a.tar.zst",
            [(_info("data/link", kind=tarfile.SYMTYPE, link="/etc/passwd"), None), *_members(b)],
        ),
    ),
    "hardlink": (
        "ERR_EXPORT_CHECKSUM",
        lambda b, t, h: _write(
            t / "a.tar.zst",
            [*_members(b), (_info("data/hard", kind=tarfile.LNKTYPE, link="export.json"), None)],
        ),
    ),
    "device": (
        "ERR_EXPORT_CHECKSUM",
        lambda b, t, h: _write(
            t / "a.tar.zst", [(_info("data/dev", kind=tarfile.CHRTYPE), None), *_members(b)]
        ),
    ),
    "fifo": (
        "ERR_EXPORT_CHECKSUM",
        lambda b, t, h: _write(
            t / "a.tar.zst", [(_info("data/fifo", kind=tarfile.FIFOTYPE), None), *_members(b)]
        ),
    ),
    "duplicate": (
        "ERR_EXPORT_CHECKSUM",
        lambda b, t, h: _write(t / "a.tar.zst", [*_members(b), _members(b)[-1]]),
    ),
    "zstd-bomb": ("ERR_EXPORT_CHECKSUM", lambda b, t, h: _bomb(t / "a.tar.zst", _members(b))),
    "truncated": ("ERR_EXPORT_CHECKSUM", lambda b, t, h: _truncate(Path(f"{b}.tar.zst"), t / "a.tar.zst")),
    "lying-manifest": ("ERR_EXPORT_SIGNATURE", lambda b, t, h: _edited(b, t, _lie_in_manifest)),
    "tampered-payload": ("ERR_EXPORT_CHECKSUM", lambda b, t, h: _edited(b, t, _tamper_payload)),
    # A valid signature over another manifest is a replayed signature: a trust failure (docs/verification.md).
    "other-manifest-signature": (
        "ERR_EXPORT_TRUST",
        lambda b, t, h: _edited(b, t, lambda f: _swap_signatures(f, h)),
    ),
}


def _truncate(source: Path, target: Path) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) * 2 // 3])
    return target


def _swap_signatures(folder: Path, history: MirrorHistory) -> None:
    other = history.out / history.full0.name.removesuffix(".tar.zst")
    shutil.rmtree(folder / "signatures")
    shutil.copytree(other / "signatures", folder / "signatures")


@pytest.fixture(scope="module")
def imported(mirror_history: MirrorHistory, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A mirror holding full0, imported once; each case works on a copy."""
    mirror = tmp_path_factory.mktemp("hostile-template") / "mirror"
    assert mirror_import(mirror_history.full0, mirror, mirror_history.trust_root) == (0, "")
    return mirror


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_archives_are_refused_and_change_nothing(
    case: str, mirror_history: MirrorHistory, imported: Path, tmp_path: Path
) -> None:
    h = mirror_history
    code, build = CASES[case]
    mirror = tmp_path / "mirror"
    shutil.copytree(imported, mirror, symlinks=True)
    hostile = build(h.out / h.full2.name.removesuffix(".tar.zst"), tmp_path, h)
    outside = {p for p in tree_digests(tmp_path) if not p.startswith("mirror/")}
    before = mirror_digest(mirror)
    returncode, error = mirror_import(hostile, mirror, h.trust_root)
    assert error == code, (case, returncode, error)
    assert mirror_digest(mirror) == before
    assert {p for p in tree_digests(tmp_path) if not p.startswith("mirror/")} == outside
    assert not (tmp_path / "evil-abs").exists() and not (tmp_path.parent / "evil").exists()
    # The genuine bundle still imports afterwards.
    assert mirror_import(h.full2, mirror, h.trust_root) == (0, "")
