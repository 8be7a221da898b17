"""The deterministic ``.tar.zst`` bundle form and its hostile-input reader."""

from __future__ import annotations

import hashlib
import io
import os
import random
import subprocess
import sys
import tarfile
import textwrap
import unicodedata
from pathlib import Path

import pytest
import zstandard

from stella.bundle.archive import MAX_WINDOW_LOG, iter_tar_zst, write_tar_zst
from stella.errors import BundleIntegrityError, UsageError
from tests.support import REPO, require_tool

MTIME = 1_700_000_000
LONG_NAME = "data/" + "deeply-nested-folder-name/" * 6 + "advisories-" + "x" * 60 + ".jsonl.zst"


def build_tree(root: Path) -> dict[str, bytes]:
    """A bundle-shaped tree with the awkward cases: long, non-ASCII, empty, multi-MB, nested."""
    files = {
        "export.json": b'{"schema":"stella.export/v1"}',
        "provenance.json": b'{"_type":"https://in-toto.io/Statement/v1"}',
        "signatures/export.json.sig": b"MEUCIQ==",
        "data/a.jsonl.zst": random.Random(1).randbytes(2_500_000),
        "data/a/b.json": b"{}",  # sorts after "data/a.jsonl.zst": '/' (0x2f) > '.' (0x2e)
        "data/empty": b"",
        "data/r\u00e9sum\u00e9.json": b"{}",
        "data/Z-upper.json": b"Z",
        LONG_NAME: b"long",
    }
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    (root / "data" / "empty-dir").mkdir()
    return files


@pytest.fixture()
def tree(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path / "bundle"
    root.mkdir()
    return root, build_tree(root)


def sha256_file(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def untar(path: Path) -> bytes:
    return zstandard.ZstdDecompressor().stream_reader(path.open("rb")).read()


# --- determinism ---------------------------------------------------------------------------


def test_same_tree_gives_same_bytes(tmp_path: Path, tree: tuple[Path, dict[str, bytes]]) -> None:
    root, _ = tree
    first = write_tar_zst(root, tmp_path / "one.tar.zst", mtime=MTIME)
    second = write_tar_zst(root, tmp_path / "two.tar.zst", mtime=MTIME)
    assert first == second == sha256_file(tmp_path / "one.tar.zst")
    assert (tmp_path / "one.tar.zst").read_bytes() == (tmp_path / "two.tar.zst").read_bytes()


def test_mtimes_modes_and_threads_do_not_change_bytes(
    tmp_path: Path, tree: tuple[Path, dict[str, bytes]]
) -> None:
    root, files = tree
    before = write_tar_zst(root, tmp_path / "before.tar.zst", mtime=MTIME, threads=1)
    for number, name in enumerate(sorted(files)):
        os.utime(root / name, (1_000_000 + number * 7.25, 2_000_000_000 - number * 3.5))
        os.chmod(root / name, 0o600 if number % 2 else 0o755)
    after = write_tar_zst(root, tmp_path / "after.tar.zst", mtime=MTIME, threads=2)
    assert before == after
    assert write_tar_zst(root, tmp_path / "other.tar.zst", mtime=MTIME + 1) != before


def test_umask_timezone_locale_and_location_do_not_change_bytes(
    tmp_path: Path, tree: tuple[Path, dict[str, bytes]]
) -> None:
    root, _ = tree
    here = write_tar_zst(root, tmp_path / "here.tar.zst", mtime=MTIME)
    script = textwrap.dedent(
        f"""
        import os, shutil, sys
        from pathlib import Path
        from stella.bundle.archive import write_tar_zst
        os.umask(0o077)
        copy = Path({str(tmp_path / "elsewhere" / "deeper")!r})
        shutil.copytree({str(root)!r}, copy, copy_function=shutil.copyfile)
        os.chdir(copy.parent)
        print(write_tar_zst(Path("deeper"), Path("x.tar.zst"), mtime={MTIME}, threads=3))
        """
    )
    env = {**os.environ, "TZ": "Pacific/Chatham", "LC_ALL": "C", "LANG": "C", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == here


def test_header_fields_are_fixed_and_members_sorted(
    tmp_path: Path, tree: tuple[Path, dict[str, bytes]]
) -> None:
    root, files = tree
    out = tmp_path / "b.tar.zst"
    write_tar_zst(root, out, mtime=MTIME)
    raw = untar(out)
    assert b"PaxHeader" not in raw and b"atime" not in raw and b"ctime" not in raw
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(files, key=lambda n: n.encode("utf-8"))  # no directories, no empty-dir
        for member in members:
            assert member.type == tarfile.REGTYPE
            assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", "")
            assert member.mode == 0o644 and member.mtime == MTIME
            assert member.pax_headers == {}
            extracted = tar.extractfile(member)
            assert extracted is not None and extracted.read() == files[member.name]
    assert raw[257:265] == b"ustar  \x00"  # GNU magic


def test_zstd_frame_parameters(tmp_path: Path, tree: tuple[Path, dict[str, bytes]]) -> None:
    root, _ = tree
    out = tmp_path / "b.tar.zst"
    write_tar_zst(root, out, mtime=MTIME)
    params = zstandard.get_frame_parameters(out.read_bytes()[:18])
    assert params.content_size == len(untar(out))
    assert params.has_checksum and params.dict_id == 0
    assert params.window_size <= 1 << 21 < 1 << MAX_WINDOW_LOG


def test_uncompressed_tar_is_pinned(tmp_path: Path) -> None:
    """The canonical form; if this moves, every published bundle digest moves with it."""
    root = tmp_path / "t"
    (root / "data").mkdir(parents=True)
    (root / "export.json").write_bytes(b"{}")
    (root / "data" / "x.jsonl").write_bytes(b'{"id":"GO-2020-0001"}\n')
    out = tmp_path / "t.tar.zst"
    write_tar_zst(root, out, mtime=0)
    assert hashlib.sha256(untar(out)).hexdigest() == PINNED_TAR_SHA256


PINNED_TAR_SHA256 = "28e23fcd1b6fce5b3c774cf9c3806fa2dc93c50927b4f7107e0698e51bb0dea5"


def test_tar_equals_gnu_tars_reproducible_recipe(tmp_path: Path, tree: tuple[Path, dict[str, bytes]]) -> None:
    """An independent implementation agrees byte for byte (names <= 100 bytes: for long names
    GNU tar writes mode 0644 into the ``././@LongLink`` header where Python writes 0)."""
    tar_cli = require_tool("tar")
    root, files = tree
    (root / LONG_NAME).unlink()
    names = sorted((n for n in files if n != LONG_NAME), key=lambda n: n.encode())
    (tmp_path / "list").write_bytes(b"".join(n.encode() + b"\n" for n in names))
    gnu = tmp_path / "gnu.tar"
    subprocess.run(
        [tar_cli, "--format=gnu", f"--mtime=@{MTIME}", "--owner=0", "--group=0", "--numeric-owner",
         "--mode=0644", "--no-recursion", "-cf", str(gnu), "-C", str(root), "-T", str(tmp_path / "list")],
        check=True,
        env={"LC_ALL": "C.UTF-8", "TZ": "UTC"},
    )  # fmt: skip
    ours = tmp_path / "ours.tar.zst"
    write_tar_zst(root, ours, mtime=MTIME)
    assert untar(ours) == gnu.read_bytes()


def test_empty_tree(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    write_tar_zst(tmp_path / "empty", tmp_path / "e.tar.zst", mtime=MTIME)
    assert list(iter_tar_zst(tmp_path / "e.tar.zst")) == []


# --- what the writer refuses -----------------------------------------------------------------


def test_writer_refuses_links_specials_bad_mtime_and_keeps_old_output(tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    (root / "ok.json").write_bytes(b"{}")
    out = tmp_path / "out.tar.zst"
    out.write_bytes(b"previous bundle")
    (root / "link.json").symlink_to(root / "ok.json")
    with pytest.raises(UsageError, match="link.json.*symbolic links"):
        write_tar_zst(root, out, mtime=MTIME)
    (root / "link.json").unlink()
    os.mkfifo(root / "pipe")
    with pytest.raises(UsageError, match="pipe.*only regular files"):
        write_tar_zst(root, out, mtime=MTIME)
    (root / "pipe").unlink()
    for bad in (-1, 1.5, True, 8**11):
        with pytest.raises(UsageError, match="mtime"):
            write_tar_zst(root, out, mtime=bad)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="threads"):
        write_tar_zst(root, out, mtime=MTIME, threads=0)
    with pytest.raises(UsageError, match="inside the folder"):
        write_tar_zst(root, root / "self.tar.zst", mtime=MTIME)
    (root / "OK.json").write_bytes(b"{}")
    with pytest.raises(UsageError, match="differing only in case"):
        write_tar_zst(root, out, mtime=MTIME)
    assert out.read_bytes() == b"previous bundle"
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


# --- real tools accept it --------------------------------------------------------------------


def test_zstd_and_tar_clis_accept_the_archive(tmp_path: Path, tree: tuple[Path, dict[str, bytes]]) -> None:
    zstd_cli = require_tool("zstd")
    tar_cli = require_tool("tar")
    root, files = tree
    out = tmp_path / "bundle.tar.zst"
    write_tar_zst(root, out, mtime=MTIME)
    subprocess.run([zstd_cli, "-q", "-t", str(out)], check=True)
    plain = tmp_path / "bundle.tar"
    subprocess.run([zstd_cli, "-q", "-d", str(out), "-o", str(plain)], check=True)
    listed = subprocess.run(
        [tar_cli, "--numeric-owner", "-tvf", str(plain)],
        capture_output=True,
        check=True,
        env={"LC_ALL": "C.UTF-8"},
    ).stdout.decode("utf-8")
    lines = listed.splitlines()
    assert [line.split(maxsplit=5)[5] for line in lines] == sorted(files, key=lambda n: n.encode())
    assert all(line.startswith("-rw-r--r-- 0/0 ") for line in lines)
    extracted = tmp_path / "x"
    extracted.mkdir()
    subprocess.run([tar_cli, "--zstd", "-xf", str(out), "-C", str(extracted)], check=True)
    for name, content in files.items():
        assert (extracted / name).read_bytes() == content


# --- the streaming reader ----------------------------------------------------------------------


def test_reader_streams_every_member(tmp_path: Path, tree: tuple[Path, dict[str, bytes]]) -> None:
    root, files = tree
    out = tmp_path / "b.tar.zst"
    write_tar_zst(root, out, mtime=MTIME)
    seen = {}
    for name, size, reader in iter_tar_zst(out):
        data = reader.read(7) + reader.read()
        assert len(data) == size
        seen[name] = data
    assert seen == files
    # A consumer may skip members without reading them.
    assert [name for name, _, _ in iter_tar_zst(out)] == sorted(files, key=lambda n: n.encode())


def make_archive(
    path: Path, members: list[tuple[tarfile.TarInfo, bytes]], fmt: int = tarfile.GNU_FORMAT
) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, content in members:
            info.size = len(content) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(content) if info.isreg() else None)
    path.write_bytes(zstandard.ZstdCompressor().compress(buf.getvalue()))
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


HOSTILE: dict[str, tuple[list[tuple[tarfile.TarInfo, bytes]], str, str]] = {
    "absolute": ([(member("/etc/passwd"), b"x")], "/etc/passwd", "absolute"),
    "dotdot": ([(member("../evil"), b"x")], "../evil", "'..'"),
    "inner dotdot": ([(member("data/../../evil"), b"x")], "data/../../evil", "'..'"),
    "dot": ([(member("./data/x"), b"x")], "./data/x", "'.'"),
    "empty component": ([(member("data//x"), b"x")], "data//x", "''"),
    "backslash": ([(member("data\\..\\x"), b"x")], "data\\..\\x", "backslash"),
    "control": ([(member("data/x\ny"), b"x")], "data/x\ny", "control"),
    "drive": ([(member("C:/x"), b"x")], "C:/x", "drive"),
    "not nfc": ([(member(unicodedata.normalize("NFD", "data/\u00e9")), b"x")], "data/e", "NFC"),
    "symlink": ([(member("data/link", tarfile.SYMTYPE, "/etc/passwd"), b"")], "data/link", "symbolic link"),
    "hardlink": (
        [(member("data/a"), b"x"), (member("data/b", tarfile.LNKTYPE, "data/a"), b"")],
        "data/b",
        "hard link",
    ),
    "char device": ([(member("data/dev", tarfile.CHRTYPE), b"")], "data/dev", "device"),
    "block device": ([(member("data/blk", tarfile.BLKTYPE), b"")], "data/blk", "device"),
    "fifo": ([(member("data/fifo", tarfile.FIFOTYPE), b"")], "data/fifo", "FIFO"),
    "duplicate": ([(member("data/a"), b"1"), (member("data/a"), b"2")], "data/a", "duplicate"),
    "case duplicate": ([(member("data/a"), b"1"), (member("data/A"), b"2")], "data/A", "case"),
    "file then dir": ([(member("data/a"), b"1"), (member("data/a/b"), b"2")], "data/a/b", "under the file"),
    "dir then file": ([(member("data/a/b"), b"1"), (member("data/a"), b"2")], "data/a", "directory"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_reader_refuses_unsafe_members(tmp_path: Path, case: str) -> None:
    members, name, reason = HOSTILE[case]
    archive = make_archive(tmp_path / "evil.tar.zst", members)
    with pytest.raises(BundleIntegrityError) as caught:
        for _ in iter_tar_zst(archive):
            pass
    assert caught.value.code == "ERR_EXPORT_CHECKSUM"
    assert reason in caught.value.message
    if case != "not nfc":
        assert repr(name) in caught.value.message


def test_reader_skips_safe_directories_but_checks_them(tmp_path: Path) -> None:
    archive = make_archive(
        tmp_path / "d.tar.zst", [(member("data", tarfile.DIRTYPE), b""), (member("data/x"), b"abc")]
    )
    assert [(n, s) for n, s, _ in iter_tar_zst(archive)] == [("data/x", 3)]
    bad = make_archive(tmp_path / "e.tar.zst", [(member("../up", tarfile.DIRTYPE), b"")])
    with pytest.raises(BundleIntegrityError, match="'..'"):
        list(iter_tar_zst(bad))


def test_reader_caps(tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "c.tar.zst", [(member(f"data/{i}"), b"x" * 100) for i in range(5)])
    with pytest.raises(BundleIntegrityError, match="'data/0'.*cap"):
        list(iter_tar_zst(archive, max_member_bytes=99))
    with pytest.raises(BundleIntegrityError, match="'data/2'.*total"):
        list(iter_tar_zst(archive, max_total_bytes=250))
    with pytest.raises(BundleIntegrityError, match="'data/3'.*more than 3 members"):
        list(iter_tar_zst(archive, max_members=3))
    assert len(list(iter_tar_zst(archive, max_member_bytes=100, max_total_bytes=500, max_members=5))) == 5


def test_reader_refuses_huge_extended_headers(tmp_path: Path) -> None:
    long_gnu = make_archive(tmp_path / "g.tar.zst", [(member("data/" + "n" * 70_000), b"x")])
    with pytest.raises(BundleIntegrityError, match="extended header|exceeds"):
        list(iter_tar_zst(long_gnu))
    info = member("data/x")
    info.pax_headers = {"comment": "c" * 70_000}
    long_pax = make_archive(tmp_path / "p.tar.zst", [(info, b"x")], fmt=tarfile.PAX_FORMAT)
    with pytest.raises(BundleIntegrityError, match="exceeds"):
        list(iter_tar_zst(long_pax))


def test_reader_rejects_garbage_corruption_truncation_and_big_windows(
    tmp_path: Path, tree: tuple[Path, dict[str, bytes]]
) -> None:
    root, _ = tree
    good = tmp_path / "good.tar.zst"
    write_tar_zst(root, good, mtime=MTIME)
    data = good.read_bytes()

    def drain(path: Path) -> None:
        for _, _, reader in iter_tar_zst(path):
            reader.read()

    tail_frame = zstandard.ZstdCompressor().compress(b"appended")
    cases = {
        "garbage": random.Random(0).randbytes(5000),
        "checksum flipped": data[:-1] + bytes([data[-1] ^ 0x01]),
        "frame appended": data + tail_frame,
        "bytes appended": data + b"\x00" * 64,
        "truncated": data[: len(data) // 2],
        "flipped": data[:-2000] + bytes([data[-2000] ^ 0xFF]) + data[-1999:],
        "plain tar": untar(good),
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(BundleIntegrityError):
            drain(tmp_path / name)
        with pytest.raises(BundleIntegrityError):  # also when members are skipped unread
            list(iter_tar_zst(tmp_path / name))
    big_window = tmp_path / "window.tar.zst"
    params = zstandard.ZstdCompressionParameters(compression_level=3, window_log=MAX_WINDOW_LOG + 1)
    with (
        big_window.open("wb") as out,
        zstandard.ZstdCompressor(compression_params=params).stream_writer(out) as z,
    ):
        z.write(untar(good))
    with pytest.raises(BundleIntegrityError, match="corrupt"):
        drain(big_window)


def test_reader_accepts_archives_made_by_gnu_tar_and_zstd(
    tmp_path: Path, tree: tuple[Path, dict[str, bytes]]
) -> None:
    """Interop the other way: a stock ``tar --zstd`` archive, directory entries and all.

    Names must be exactly the manifest's paths, so GNU tar's ``./`` prefix (from
    ``-C dir .``) is refused rather than silently rewritten.
    """
    tar_cli = require_tool("tar")
    require_tool("zstd")
    root, files = tree
    out = tmp_path / "cli.tar.zst"
    top = sorted(p.name for p in root.iterdir())
    subprocess.run([tar_cli, "--zstd", "-cf", str(out), "-C", str(root), *top], check=True)
    assert {name: reader.read() for name, _, reader in iter_tar_zst(out)} == files
    dotted = tmp_path / "dotted.tar.zst"
    subprocess.run([tar_cli, "--zstd", "-cf", str(dotted), "-C", str(root), "."], check=True)
    with pytest.raises(BundleIntegrityError, match="'.'"):
        list(iter_tar_zst(dotted))
