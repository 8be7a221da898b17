"""The Trivy Java DB: SBOM -> rows, rows -> SQLite in schema 1, and the real Trivy reading it."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from stella.adapters.trivy.javadb import (
    JavaIndexRow,
    java_db_metadata,
    java_index_rows,
    write_java_db,
)
from stella.errors import UsageError
from tests.services.trivy import build_trivy_dbs, findings, make_scenario, run_trivy
from tests.support import require, require_tool

SHA_A = "53ab2f0f92e87ea4874c8c6997335c211d81e636"
SHA_B = "e203eecc94365a6885f262d0e4c99ec059980d2e"


def _component(purl: str | None, *hashes: tuple[str, str], **extra: Any) -> dict[str, Any]:
    component: dict[str, Any] = {"type": "library", "name": "x", **extra}
    if purl is not None:
        component["purl"] = purl
    if hashes:
        component["hashes"] = [{"alg": alg, "content": content} for alg, content in hashes]
    return component


def _rows(document: dict[str, Any], fmt: str = "cyclonedx") -> tuple[list[JavaIndexRow], list[str]]:
    rows, skipped = java_index_rows(document, fmt)
    return rows, sorted(reason for reason, _ in skipped)


# -- SBOM -> rows ---------------------------------------------------------------------------


def test_cyclonedx_maven_purl_with_sha1_gives_one_row() -> None:
    doc = {"components": [_component("pkg:maven/org.example/lib@1.0?type=jar", ("SHA-1", SHA_A.upper()))]}
    rows, skipped = _rows(doc)
    assert rows == [JavaIndexRow("org.example", "lib", "1.0", bytes.fromhex(SHA_A), "jar")]
    assert skipped == []


def test_percent_encoding_qualifiers_and_subpath_are_decoded() -> None:
    purl = "pkg:maven/org.example/my%2Blib@1.0%2Bbuild.1?classifier=linux-x86_64&type=jar#sub/path"
    rows, _ = _rows({"components": [_component(purl, ("SHA-1", SHA_A))]})
    assert [(r.group_id, r.artifact_id, r.version) for r in rows] == [
        ("org.example", "my+lib", "1.0+build.1")
    ]


def test_nested_components_and_metadata_component_are_walked() -> None:
    inner = _component("pkg:maven/org.example/inner@2.0", ("SHA-1", SHA_B))
    outer = _component("pkg:maven/org.example/outer@1.0", ("SHA-1", SHA_A), components=[inner])
    doc = {
        "metadata": {"component": _component("pkg:maven/org.example/app@3.0")},
        "components": [outer],
    }
    rows, skipped = _rows(doc)
    assert [r.artifact_id for r in rows] == ["inner", "outer"]
    assert skipped == ["no-sha1"]  # the application itself declares no jar hash


@pytest.mark.parametrize(
    ("component", "reason"),
    [
        (_component(None, ("SHA-1", SHA_A)), "no-purl"),
        (_component("pkg:npm/left-pad@1.0.0", ("SHA-1", SHA_A)), "not-maven"),
        (_component("pkg:maven/org.example/lib@1.0", ("MD5", "0" * 32)), "no-sha1"),
        (_component("pkg:maven/org.example/lib@1.0", ("SHA-1", "xyz")), "malformed-sha1"),
        (_component("pkg:maven/org.example/lib@1.0", ("SHA-1", SHA_A[:-2])), "malformed-sha1"),
        (_component("pkg:maven/org.example/lib@1.0", ("SHA-1", SHA_A), ("SHA-1", SHA_B)), "conflicting-sha1"),
        (_component("pkg:maven/org.example/parent@1.0?type=pom", ("SHA-1", SHA_A)), "not-a-jar"),
        (_component("pkg:maven/org.example/webapp@1.0?type=war", ("SHA-1", SHA_A)), "not-a-jar"),
        (_component("pkg:maven/lib@1.0", ("SHA-1", SHA_A)), "malformed-purl"),
        (_component("pkg:maven/org.example/lib", ("SHA-1", SHA_A)), "no-version"),
        (_component("not a purl", ("SHA-1", SHA_A)), "not-a-purl"),
    ],
)
def test_unusable_components_are_skipped_with_a_reason(component: dict[str, Any], reason: str) -> None:
    rows, skipped = _rows({"components": [component]})
    assert rows == []
    assert skipped == [reason]


def test_jar_like_maven_types_are_kept() -> None:
    doc = {"components": [_component("pkg:maven/org.example/lib@1.0?type=test-jar", ("SHA-1", SHA_A))]}
    rows, _ = _rows(doc)
    assert [r.archive_type for r in rows] == ["jar"]


def test_spdx_packages_use_purl_refs_and_sha1_checksums() -> None:
    doc = {
        "packages": [
            {
                "SPDXID": "SPDXRef-lib",
                "externalRefs": [
                    {
                        "referenceCategory": "PACKAGE-MANAGER",
                        "referenceType": "purl",
                        "referenceLocator": "pkg:maven/org.example/lib@1.0",
                    }
                ],
                "checksums": [{"algorithm": "SHA1", "checksumValue": SHA_A}],
            },
            {"SPDXID": "SPDXRef-bare", "checksums": [{"algorithm": "SHA1", "checksumValue": SHA_B}]},
        ]
    }
    rows, skipped = _rows(doc, "spdx")
    assert [(r.group_id, r.artifact_id, r.version) for r in rows] == [("org.example", "lib", "1.0")]
    assert skipped == ["no-purl"]


def test_unknown_format_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        java_index_rows({}, "openvex")


def test_real_sboms(shared_data: Path) -> None:
    dropwizard = json.loads((shared_data / "sboms/cyclonedx/dropwizard-1.3.15.cdx.json").read_bytes())
    rows, skipped = java_index_rows(dropwizard, "cyclonedx")
    assert len(rows) == 167
    assert all(len(row.sha1) == 20 for row in rows)
    assert [reason for reason, _ in skipped] == ["no-sha1"]  # metadata.component, the project POM
    jackson = [r for r in rows if r.artifact_id == "jackson-annotations"]
    assert [(r.group_id, r.version, r.sha1.hex()) for r in jackson] == [
        ("com.fasterxml.jackson.core", "2.9.10", "53ab2f0f92e87ea4874c8c6997335c211d81e636")
    ]

    appbomination = json.loads((shared_data / "sboms/spdx/appbomination.spdx.json").read_bytes())
    rows, skipped = java_index_rows(appbomination, "spdx")
    assert sorted(f"{r.group_id}:{r.artifact_id}" for r in rows) == [
        "junit:junit",
        "org.apache.commons:commons-lang3",
        "org.hamcrest:hamcrest-core",
        "org.slf4j:slf4j-api",
    ]
    assert [reason for reason, _ in skipped] == ["no-purl"] * 3

    zookeeper = json.loads((shared_data / "sboms/cyclonedx/zookeeper-3.9.2.cdx.json").read_bytes())
    rows, _ = java_index_rows(zookeeper, "cyclonedx")
    # classifier jars (netty native transports) are distinct jars with their own SHA-1
    assert len(rows) == len({row.sha1 for row in rows}) == 40


# -- rows -> trivy-java.db -----------------------------------------------------------------


def _row(group: str, artifact: str, version: str, seed: str) -> JavaIndexRow:
    return JavaIndexRow(group, artifact, version, hashlib.sha1(seed.encode()).digest())


ROWS = [
    _row("org.example", "lib", "1.0", "a"),
    _row("org.example", "lib", "1.1", "b"),
    _row("org.example", "other", "2.0", "c"),
    _row("com.acme", "lib", "1.0", "d"),
]


def test_schema_and_queries_trivy_runs(tmp_path: Path) -> None:
    stats = write_java_db(tmp_path / "trivy-java.db", ROWS)
    assert (stats.artifacts, stats.indices, stats.duplicates, stats.sha1_conflicts) == (3, 4, 0, ())
    db = sqlite3.connect(tmp_path / "trivy-java.db")
    schema = dict(db.execute("SELECT name, sql FROM sqlite_master"))
    assert set(schema) == {
        "artifacts",
        "indices",
        "artifacts_idx",
        "indices_artifact_idx",
        "indices_sha1_idx",
    }
    assert "sha1 BLOB" in schema["indices"]
    assert "UNIQUE INDEX indices_sha1_idx ON indices(sha1)" in schema["indices_sha1_idx"]
    assert db.execute("PRAGMA page_size").fetchone() == (4096,)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert db.execute("SELECT DISTINCT typeof(sha1), length(sha1) FROM indices").fetchall() == [("blob", 20)]

    # Trivy's SearchBySHA1: the jar's SHA-1 decoded to raw bytes.
    by_sha1 = db.execute(
        "SELECT a.group_id, a.artifact_id, i.version, i.archive_type FROM indices i "
        "JOIN artifacts a ON a.id = i.artifact_id WHERE i.sha1 = ?",
        (hashlib.sha1(b"b").digest(),),
    ).fetchall()
    assert by_sha1 == [("org.example", "lib", "1.1", "jar")]
    # A hex TEXT value must not match (SQLite never equates BLOB and TEXT).
    assert db.execute(
        "SELECT count(*) FROM indices WHERE sha1 = ?", (hashlib.sha1(b"b").hexdigest(),)
    ).fetchone() == (0,)
    # Exists(groupId, artifactId) and SearchByArtifactID(artifactId, version).
    exists = db.execute(
        "SELECT count(*) FROM indices i JOIN artifacts a ON a.id = i.artifact_id "
        "WHERE a.group_id = ? AND a.artifact_id = ?",
        ("com.acme", "lib"),
    ).fetchone()
    assert exists == (1,)
    groups = db.execute(
        "SELECT DISTINCT a.group_id FROM indices i JOIN artifacts a ON a.id = i.artifact_id "
        "WHERE a.artifact_id = ? AND i.version = ? AND i.archive_type = 'jar' ORDER BY 1",
        ("lib", "1.0"),
    ).fetchall()
    assert groups == [("com.acme",), ("org.example",)]
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trivy-java.db"]  # no temp or journal left


def test_same_row_set_gives_same_bytes_whatever_the_order(tmp_path: Path) -> None:
    first = write_java_db(tmp_path / "a" / "trivy-java.db", ROWS)
    shuffled = ROWS * 2
    random.Random(7).shuffle(shuffled)
    second = write_java_db(tmp_path / "b" / "trivy-java.db", iter(shuffled))
    assert second.duplicates == len(ROWS)
    assert (first.digest, first.bytes) == (second.digest, second.bytes)
    assert (tmp_path / "a" / "trivy-java.db").read_bytes() == (tmp_path / "b" / "trivy-java.db").read_bytes()
    header = (tmp_path / "a" / "trivy-java.db").read_bytes()[:100]
    assert header[:16] == b"SQLite format 3\x00"
    assert header[18:20] == b"\x01\x01"  # rollback journal, not WAL


def test_one_sha1_claimed_twice_keeps_the_first_in_sort_order(tmp_path: Path) -> None:
    digest = hashlib.sha1(b"same jar").digest()
    rows = [JavaIndexRow("org.z", "lib", "1.0", digest), JavaIndexRow("org.a", "lib", "1.0", digest)]
    forward = write_java_db(tmp_path / "f.db", rows)
    backward = write_java_db(tmp_path / "b.db", reversed(rows))
    assert forward.digest == backward.digest
    assert forward.sha1_conflicts == (JavaIndexRow("org.z", "lib", "1.0", digest),)
    db = sqlite3.connect(tmp_path / "f.db")
    assert db.execute("SELECT group_id FROM artifacts").fetchall() == [("org.a",)]
    db.close()


def test_rows_reject_bad_digests_and_empty_coordinates() -> None:
    with pytest.raises(UsageError):
        JavaIndexRow("g", "a", "1", b"\x00" * 19)
    with pytest.raises(UsageError):
        JavaIndexRow("", "a", "1", b"\x00" * 20)


def test_metadata_is_version_1_from_the_injected_time() -> None:
    as_of = datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert json.loads(java_db_metadata(as_of)) == {
        "Version": 1,
        "UpdatedAt": "2024-05-01T12:00:00Z",
        "NextUpdate": "2024-05-04T12:00:00Z",
        "DownloadedAt": "0001-01-01T00:00:00Z",
    }
    placed = json.loads(java_db_metadata(as_of, downloaded_at=as_of.astimezone(UTC)))
    assert placed["DownloadedAt"] == "2024-05-01T12:00:00Z"


# -- the real Trivy -------------------------------------------------------------------------


@pytest.mark.trivy
def test_trivy_identifies_a_jar_without_pom_properties_by_sha1(tmp_path: Path) -> None:
    trivy = require_tool("trivy")
    require(importlib.util.find_spec("stella.adapters.trivy.bbolt") is not None, "stella bbolt writer")
    scenario = make_scenario(tmp_path)
    build_trivy_dbs(scenario, tmp_path / "cache")
    build_trivy_dbs(scenario, tmp_path / "control", java_rows=False)

    def scan(cache: str) -> list[tuple[str, str, str, str, str, str]]:
        args = ["rootfs", "--skip-db-update", "--skip-java-db-update", "--offline-scan", "--scanners", "vuln"]
        report = run_trivy(
            trivy, [*args, "--cache-dir", str(tmp_path / cache), str(scenario.scan_dir)], tmp_path / "home"
        )
        return findings(report)

    assert scan("control") == []  # without the SHA-1 row nothing identifies the jar
    assert scan("cache") == [
        (
            "lib/opaque-component.jar",
            f"{scenario.group}:{scenario.artifact}",
            scenario.version,
            scenario.vuln_id,
            scenario.fixed,
            "HIGH",
        )
    ]
