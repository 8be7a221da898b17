"""The bbolt writer: byte layout, round trips, real-bbolt acceptance, limits, memory, and Trivy.

Three independent judges look at every shape the writer can produce: our own reader
and checker (``boltread``), bbolt's own ``Tx.Check`` (``boltchk``), and, for the
Trivy schema, the real Trivy 0.76 scanner.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Union

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stella.adapters.trivy.bbolt import (
    MAX_KEY_SIZE,
    MAX_VALUE_SIZE,
    BoltStats,
    BoltWriter,
    Entry,
    fnv1a64,
    meta_page,
    write_bolt,
)
from stella.errors import UsageError
from tests.adapters.boltread import BoltFormatError, BoltReader, read_entries
from tests.support import require_tool

Tree = Mapping[bytes, Union[bytes, "Tree"]]
Check = Callable[[Path], str]


def flatten(tree: Tree, path: tuple[bytes, ...] = ()) -> Iterator[Entry]:
    """Entries of a nested dict in DFS order, which must equal the writer's input order."""
    for name in sorted(tree):
        child = tree[name]
        if isinstance(child, bytes):
            yield path, name, child
        else:
            yield from flatten(child, (*path, name))


def bucket_paths(tree: Tree, path: tuple[bytes, ...] = ()) -> Iterator[tuple[bytes, ...]]:
    for name in sorted(tree):
        child = tree[name]
        if not isinstance(child, bytes):
            yield (*path, name)
            yield from bucket_paths(child, (*path, name))


def to_bytes(entries: list[Entry], page_size: int = 4096) -> bytes:
    buffer = io.BytesIO()
    writer = BoltWriter(buffer, page_size=page_size)
    for path, key, value in entries:
        writer.add(path, key, value)
    stats = writer.close()
    data = buffer.getvalue()
    assert stats.file_bytes == len(data) == stats.pages * page_size
    return data


def assert_round_trip(entries: list[Entry], tree: Tree | None = None, page_size: int = 4096) -> BoltReader:
    data = to_bytes(entries, page_size)
    reader = BoltReader(data)
    report = reader.check()
    assert report.ok, report.problems
    assert list(reader.entries()) == entries
    if tree is not None:
        assert list(reader.buckets()) == list(bucket_paths(tree))
    return reader


# -- the byte layout, against the worked example of trivy-formats.md §A.15 ---------------------

A15_ENTRIES: list[Entry] = [
    ((b"data-source",), b"pip::GHSA", b'{"ID":"ghsa"}'),
    ((b"pip::GHSA", b"django"), b"CVE-1", b"{}"),
]


def test_fnv1a64_matches_the_meta_checksum_vectors() -> None:
    assert fnv1a64(b"") == 0xCBF29CE484222325
    data = to_bytes(A15_ENTRIES)
    assert fnv1a64(data[16:72]) == 0xFC0842A2C8E6B488
    assert fnv1a64(data[4096 + 16 : 4096 + 72]) == 0x1B0309ABD3D5FEA9


def test_worked_example_is_byte_exact() -> None:
    data = to_bytes(A15_ENTRIES)
    assert len(data) == 5 * 4096
    page = [data[i * 4096 : (i + 1) * 4096] for i in range(5)]
    assert page[0][:80] == bytes.fromhex(
        "0000000000000000 0400 0000 00000000"
        "edda0ced 02000000 00100000 00000000"
        "0400000000000000 0000000000000000"
        "0200000000000000 0500000000000000"
        "0000000000000000 88b4e6c8a24208fc"
    )
    assert page[1][:8] == (1).to_bytes(8, "little") and page[1][64:80] == bytes.fromhex(
        "0100000000000000 a9fed5d3ab09031b"
    )
    assert page[2] == bytes.fromhex("0200000000000000 1000 0000 00000000") + bytes(4080)
    leaf3 = bytes.fromhex(
        "0300000000000000 0200 0100 00000000"
        "01000000 10000000 06000000 37000000"
        "646a616e676f"  # django
        "0000000000000000 0000000000000000"  # bucket header: inline
        "0000000000000000 0200 0100 00000000"  # inline page header
        "00000000 10000000 05000000 02000000"
        "4356452d31 7b7d"  # CVE-1 {}
    )
    assert page[3] == leaf3 + bytes(4096 - len(leaf3))
    leaf4 = bytes.fromhex(
        "0400000000000000 0200 0200 00000000"
        "01000000 20000000 0b000000 46000000"
        "01000000 61000000 09000000 10000000"
    )
    leaf4 += b"data-source" + bytes(16) + bytes.fromhex("0000000000000000 0200 0100 00000000")
    leaf4 += bytes.fromhex("00000000 10000000 09000000 0d000000") + b'pip::GHSA{"ID":"ghsa"}'
    leaf4 += b"pip::GHSA" + bytes.fromhex("0300000000000000 0000000000000000")
    assert page[4] == leaf4 + bytes(4096 - len(leaf4))


def test_worked_example_accepted_by_bbolt(tmp_path: Path, boltchk: Check) -> None:
    stats = write_bolt(tmp_path / "a.db", A15_ENTRIES)
    assert stats == BoltStats(entries=2, buckets=3, pages=5, file_bytes=20480)
    boltchk(tmp_path / "a.db")


def test_empty_database(tmp_path: Path, boltchk: Check) -> None:
    stats = write_bolt(tmp_path / "empty.db", [])
    assert stats == BoltStats(entries=0, buckets=0, pages=4, file_bytes=4 * 4096)
    assert read_entries(tmp_path / "empty.db") == []
    boltchk(tmp_path / "empty.db")


# -- shapes: branches, overflow, inline, prefixes, limits ---------------------------------------


def shapes_tree() -> dict[bytes, Any]:
    """One tree with every structure the writer has a rule for."""
    many_small = {f"k{i:05d}".encode(): f"v{i}".encode() for i in range(6000)}
    long_keys = {i.to_bytes(2, "big") + b"L" * 900: b"x" for i in range(300)}  # deep branch levels
    return {
        b"a": {b"only": b"inline"},
        b"big": {
            b"huge": bytes(range(256)) * 800,  # 200 KiB value: a leaf with overflow pages
            b"max-key-" + b"K" * (MAX_KEY_SIZE - 8): b"max key size",
            b"small": b"after the huge one",
        },
        b"nested": {
            b"pkg": {b"CVE-1": b"{}"},  # bucket name is a prefix of its sibling keys
            b"pkg-2": b"plain",
            b"pkg2": {b"deep": {b"deeper": {b"deepest": b"1"}}},
            b"wide": many_small,
            b"long": long_keys,
        },
        b"ab": {b"x": b"1"},
        b"abc": {b"x": b"2"},
        b"inline-limit": {b"k": b"v" * (1024 - 16 - 16 - 1)},  # exactly pageSize/4: still inline
        b"inline-over": {b"k": b"v" * (1024 - 16 - 16)},  # one byte more: own page
    }


def test_shapes_round_trip_and_bbolt_check(tmp_path: Path, boltchk: Check) -> None:
    tree = shapes_tree()
    entries = list(flatten(tree))
    reader = assert_round_trip(entries, tree)
    report = reader.check()
    assert report.max_tree_depth >= 4 and report.branch_pages > 10
    assert report.overflow_pages >= 50
    stats = write_bolt(tmp_path / "shapes.db", entries)
    assert stats.entries == len(entries)
    assert stats.buckets == len(list(bucket_paths(tree)))
    boltchk(tmp_path / "shapes.db")
    with BoltReader.open(tmp_path / "shapes.db") as mapped:
        assert mapped.get((b"inline-limit",), b"k") == b"v" * 991
        assert mapped.get((b"nested", b"pkg"), b"CVE-1") == b"{}"
        assert mapped.get((b"nested",), b"pkg") is None  # a bucket, not a value
        header = _bucket_value(mapped, (b"inline-limit",))
        assert header[:8] == bytes(8) and len(header) == 1024 + 16  # inline: root 0
        assert _bucket_value(mapped, (b"inline-over",))[:8] != bytes(8)


def _bucket_value(reader: BoltReader, path: tuple[bytes, ...]) -> bytes:
    """The raw bucket-header value of a top-level bucket (a test-only peek)."""
    items = reader._bucket_items(reader._root_header(), "root")
    return next(v for f, k, v in items if k == path[0] and f & 1)


@pytest.mark.parametrize("page_size", [1024, 4096, 16384, 65536])
def test_page_sizes(tmp_path: Path, boltchk: Check, page_size: int) -> None:
    entries = list(flatten(shapes_tree()))
    assert_round_trip(entries, page_size=page_size)
    path = tmp_path / f"p{page_size}.db"
    write_bolt(path, entries, page_size=page_size)
    boltchk(path)


# -- property tests --------------------------------------------------------------------------

NAMES = st.one_of(
    st.binary(min_size=1, max_size=10),
    st.text(alphabet="ab", min_size=1, max_size=3).map(str.encode),  # prefixes of one another
)


def _filled(size: int, seed: int) -> bytes:
    return bytes((seed + i) % 256 for i in range(min(size, 64))) * (size // 64 + 1)


VALUES = st.one_of(
    st.binary(max_size=48),
    st.builds(_filled, st.integers(100, 1500), st.integers(0, 255)),
    st.builds(_filled, st.integers(3000, 20000), st.integers(0, 255)),  # overflow pages
)


def _wide(count: int, key_size: int, value_size: int) -> dict[bytes, Any]:
    """Many keys in one bucket: multi-level branch pages without thousands of draws."""
    return {i.to_bytes(3, "big") + b"w" * key_size: _filled(value_size + i % 7, i) for i in range(count)}


WIDE = st.builds(
    _wide, st.integers(20, 800), st.sampled_from([0, 8, 300, 1500]), st.sampled_from([0, 20, 200])
)


def _buckets(children: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[bytes, Any]]:
    return st.one_of(st.dictionaries(NAMES, children, min_size=1, max_size=8), WIDE)


TREES = st.dictionaries(
    NAMES,
    _buckets(st.recursive(VALUES, _buckets, max_leaves=40)),
    min_size=1,
    max_size=4,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(tree=TREES, page_size=st.sampled_from([1024, 4096]))
def test_random_trees_round_trip(tree: dict[bytes, Any], page_size: int) -> None:
    entries = list(flatten(tree))
    assert entries == sorted(entries, key=lambda e: (*e[0], e[1]))
    assert_round_trip(entries, tree, page_size)
    assert to_bytes(entries, page_size) == to_bytes(entries, page_size)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(tree=TREES, page_size=st.sampled_from([1024, 4096]))
def test_random_trees_accepted_by_bbolt(tree: dict[bytes, Any], page_size: int, boltchk: Check) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "random.db"
        write_bolt(path, flatten(tree), page_size=page_size)
        boltchk(path)


def test_determinism_across_writes(tmp_path: Path) -> None:
    entries = list(flatten(shapes_tree()))
    write_bolt(tmp_path / "one.db", entries)
    write_bolt(tmp_path / "two.db", iter(entries))
    assert (tmp_path / "one.db").read_bytes() == (tmp_path / "two.db").read_bytes()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# -- usage errors ------------------------------------------------------------------------------


class _Huge(bytes):
    """Claims to exceed bbolt's value limit without allocating 2 GiB."""

    def __len__(self) -> int:
        return MAX_VALUE_SIZE + 1


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([((b"b",), b"k", b"1"), ((b"a",), b"k", b"1")], r"out of order: 'a' / 'k' after 'b' / 'k'"),
        ([((b"a",), b"k2", b"1"), ((b"a",), b"k1", b"1")], r"out of order: 'a' / 'k1' after 'a' / 'k2'"),
        ([((b"a",), b"k", b"1"), ((b"a",), b"k", b"2")], r"duplicate bbolt key 'a' / 'k'"),
        (
            [((b"a",), b"x", b"1"), ((b"a", b"x"), b"k", b"2")],
            r"'a' / 'x' is used both as a bucket and as a plain key",
        ),
        (
            [((b"a", b"x"), b"k", b"1"), ((b"a",), b"x", b"2")],
            r"'a' / 'x' is used both as a bucket and as a plain key",
        ),
        ([((b"a",), b"", b"1")], r"1\.\.32768 bytes; an empty name in 'a' / ''"),
        ([((b"a", b""), b"k", b"1")], r"an empty name in 'a' / '' / 'k'"),
        ([((b"a",), b"k" * (MAX_KEY_SIZE + 1), b"1")], r"a 32769-byte name in 'a' / 'kkkk"),
        ([((b"a",), b"ok", b"1"), ((b"a",), b"k" * (MAX_KEY_SIZE + 1), b"1")], r"a 32769-byte name"),
        ([((b"a",), b"k", _Huge(b"v"))], r"values must be at most 2147483646 bytes; 'a' / 'k'"),
        ([((b"a",), b"j", b"1"), ((b"a",), b"k", _Huge(b"v"))], r"at most 2147483646 bytes; 'a' / 'k'"),
        ([((), b"k", b"1")], r"non-empty tuple bucket path"),
        ([((b"a",), "k", b"1")], r"must be bytes; got str"),
        ([((b"a",), b"j", b"1"), ((b"a",), b"k", "v")], r"must be bytes; got str"),
        ([([b"a"], b"k", b"1")], r"non-empty tuple bucket path"),
    ],
)
def test_usage_errors_name_the_key(entries: list[Any], message: str) -> None:
    writer = BoltWriter(io.BytesIO())
    with pytest.raises(UsageError, match=message) as caught:
        for path, key, value in entries:
            writer.add(path, key, value)
    assert caught.value.code == "ERR_EXPORT_USAGE"


def test_rejected_entry_leaves_the_writer_usable(tmp_path: Path, boltchk: Check) -> None:
    with (tmp_path / "ok.db").open("wb") as handle:
        writer = BoltWriter(handle)
        writer.add((b"a",), b"k1", b"1")
        with pytest.raises(UsageError):
            writer.add((b"a",), b"k0", b"0")
        writer.add((b"a",), b"k2", b"2")
        assert writer.close() == writer.close()
        with pytest.raises(UsageError, match="closed"):
            writer.add((b"b",), b"k", b"v")
    assert read_entries(tmp_path / "ok.db") == [((b"a",), b"k1", b"1"), ((b"a",), b"k2", b"2")]
    boltchk(tmp_path / "ok.db")


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        write_bolt(tmp_path / "bad.db", [((b"b",), b"k", b"1"), ((b"a",), b"k", b"1")])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("page_size", [512, 3000, 131072])
def test_bad_page_size(page_size: int) -> None:
    with pytest.raises(UsageError, match="page size"):
        BoltWriter(io.BytesIO(), page_size=page_size)


# -- the reader rejects damage -----------------------------------------------------------------


def test_reader_rejects_corruption() -> None:
    good = to_bytes(list(flatten(shapes_tree())))
    with pytest.raises(BoltFormatError, match="no valid bbolt meta page"):
        BoltReader(bytes(8192))
    one_bad = bytearray(good)
    one_bad[20] ^= 1  # meta 0 version
    assert BoltReader(bytes(one_bad)).meta.txid == 1  # meta 1 still valid
    both_bad = bytearray(one_bad)
    both_bad[4096 + 72] ^= 1  # meta 1 checksum
    with pytest.raises(BoltFormatError, match="checksum mismatch"):
        BoltReader(bytes(both_bad))
    with pytest.raises(BoltFormatError, match="exceeds the file"):
        BoltReader(good[:-4096])
    wrong_id = bytearray(good)
    wrong_id[3 * 4096] ^= 0xFF  # first tree page claims another id
    report = BoltReader(bytes(wrong_id)).check()
    assert not report.ok and "carries id" in report.problems[0]
    with pytest.raises(BoltFormatError, match="carries id"):
        list(BoltReader(bytes(wrong_id)).entries())


def test_both_checkers_reject_an_unreachable_page(tmp_path: Path, boltchk: Check) -> None:
    """An extra page that nothing references: bbolt and our checker must both object."""
    data = to_bytes(A15_ENTRIES)
    pgid = len(data) // 4096 + 1
    metas = [meta_page(page_size=4096, pgid=pgid, root=4, freelist=2, txid=t) for t in (0, 1)]
    damaged = b"".join(metas) + data[2 * 4096 :] + bytes(4096)
    report = BoltReader(damaged).check()
    assert report.problems == [f"page {pgid - 1}: unreachable unfreed"]
    with pytest.raises(BoltFormatError, match="unreachable unfreed"):
        BoltReader(damaged).verify()
    (tmp_path / "damaged.db").write_bytes(damaged)
    with pytest.raises(AssertionError, match="unreachable unfreed"):
        boltchk(tmp_path / "damaged.db")


# -- bounded memory ----------------------------------------------------------------------------


def _stream(count: int) -> Iterator[Entry]:
    """Trivy-shaped entries made on the fly: nothing of the data set stays alive."""
    per_package = 3
    for i in range(count):
        package, vuln = divmod(i, per_package)
        yield (
            (b"pip::GitHub Security Advisory pip", b"pkg-%08d" % package),
            b"CVE-2024-%06d" % vuln,
            b'{"VulnerableVersions":["<%d.0"],"PatchedVersions":["%d.0"],"Custom":"%s"}' % (i, i, b"x" * 150),
        )


def _peak_while_writing(path: Path, count: int) -> int:
    tracemalloc.start()
    try:
        write_bolt(path, _stream(count))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow  # tracemalloc makes 200k entries take tens of seconds
def test_memory_does_not_grow_with_the_data(tmp_path: Path) -> None:
    small = _peak_while_writing(tmp_path / "small.db", 10_000)
    large = _peak_while_writing(tmp_path / "large.db", 200_000)
    data_bytes = sum(len(k) + len(v) for _p, k, v in _stream(200_000))
    assert data_bytes > 45_000_000
    assert large < data_bytes / 100, (large, data_bytes)  # under 0.5 MB for a 48 MB stream
    assert large - small < 64 * 1024, (small, large)  # twenty times the data, no growth
    assert (tmp_path / "large.db").stat().st_size > data_bytes


# -- the real Trivy 0.76 reads a Trivy-schema DB written by us ------------------------------------


def _trivy_entries() -> list[Entry]:
    bucket = b"pip::GitHub Security Advisory pip"
    advisory = {"VulnerableVersions": ["<2.20.0"], "PatchedVersions": ["2.20.0"]}
    details = {
        "Title": "requests: Redirect from HTTPS to HTTP does not remove Authorization header",
        "Description": "Requests before 2.20.0 sends an HTTP Authorization header. " * 200,  # overflow
        "VendorSeverity": {"ghsa": 3, "nvd": 3},
        "CweIDs": ["CWE-522"],
    }
    source = {
        "ID": "ghsa",
        "Name": "GitHub Security Advisory pip",
        "URL": "https://github.com/advisories?query=type%3Areviewed+ecosystem%3Apip",
    }
    rows: list[Entry] = [((b"data-source",), bucket, json.dumps(source).encode())]
    # Thousands of neighbours put the requests bucket behind branch pages.
    packages = {
        f"filler-{i:05d}".encode(): {b"CVE-2000-%05d" % i: b'{"VulnerableVersions":["<0"]}'}
        for i in range(4000)
    }
    packages[b"requests"] = {b"CVE-2018-18074": json.dumps(advisory).encode()}
    rows += flatten({bucket: packages})
    vulns = {b"CVE-2000-%05d" % i: b'{"Title":"filler"}' for i in range(4000)}
    vulns[b"CVE-2018-18074"] = json.dumps(details).encode()
    rows += flatten({b"vulnerability": vulns})
    return rows


@pytest.mark.trivy
def test_real_trivy_finds_the_vulnerability(tmp_path: Path, boltchk: Check) -> None:
    trivy = require_tool("trivy")
    db_dir = tmp_path / "cache" / "db"
    db_dir.mkdir(parents=True)
    entries = _trivy_entries()
    assert entries == sorted(entries, key=lambda e: (*e[0], e[1]))
    write_bolt(db_dir / "trivy.db", entries)
    boltchk(db_dir / "trivy.db")
    metadata = {"Version": 2, "NextUpdate": "2099-01-01T00:00:00Z", "UpdatedAt": "2026-01-01T00:00:00Z"}
    (db_dir / "metadata.json").write_text(json.dumps(metadata))
    sbom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "components": [
            {
                "type": "library",
                "bom-ref": "pkg:pypi/requests@2.19.0",
                "name": "requests",
                "version": "2.19.0",
                "purl": "pkg:pypi/requests@2.19.0",
            },
            {
                "type": "library",
                "bom-ref": "pkg:pypi/filler-00007@1.0",
                "name": "filler-00007",
                "version": "1.0",
                "purl": "pkg:pypi/filler-00007@1.0",
            },
        ],
    }
    (tmp_path / "app.cdx.json").write_text(json.dumps(sbom))
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    done = subprocess.run(
        [
            trivy,
            "sbom",
            "--skip-db-update",
            "--skip-java-db-update",
            "--offline-scan",
            "--skip-version-check",
            "--disable-telemetry",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--format",
            "json",
            "--output",
            str(tmp_path / "out.json"),
            str(tmp_path / "app.cdx.json"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "out.json").read_text())
    found = {
        (v["PkgName"], v["VulnerabilityID"]): v
        for result in report.get("Results", [])
        for v in result.get("Vulnerabilities", [])
    }
    assert set(found) == {("requests", "CVE-2018-18074")}
    finding = found["requests", "CVE-2018-18074"]
    assert finding["InstalledVersion"] == "2.19.0"
    assert finding["FixedVersion"] == "2.20.0"
    assert finding["Severity"] == "HIGH"
    assert finding["DataSource"]["ID"] == "ghsa"
    assert finding["Title"].startswith("requests: Redirect")
    assert len(finding["Description"]) > 4096  # read through overflow pages
    assert (db_dir / "trivy.db").exists()  # Trivy deletes a DB it finds corrupt


def test_benchmark_floor_writes_a_valid_trivy_shaped_db(tmp_path: Path, boltchk: Check) -> None:
    from benchmarks.bbolt_floor import trivy_shaped_entries, write_floor

    result = write_floor(3000, tmp_path / "floor.db")
    assert result["entries"] == 3000 and result["bytes"] == (tmp_path / "floor.db").stat().st_size
    assert set(result) == {"entries", "seconds", "bytes", "peak_rss_mb"}
    boltchk(tmp_path / "floor.db")
    assert read_entries(tmp_path / "floor.db") == list(trivy_shaped_entries(3000))
