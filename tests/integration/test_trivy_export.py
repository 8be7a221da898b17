"""trivy:db and trivy:java-db end to end: the real CLI, the real Trivy 0.76, a real registry, boltchk.

One ledger holds all of ``../shared/data`` plus the opaque-jar scenario of
``tests/services/trivy.py`` (an SBOM declaring the jar's SHA-1 and a Maven OSV advisory for
its coordinates). Both profiles are exported from it with ``stella export run``; Trivy
then scans with nothing but the bundles' files, offline and after pulling them from a
registry they were pushed to with ``stella export push``.

The oracle (``tests/adapters/trivy_oracle.py``) never sees the adapter or the export: it
reads the OSV records straight from the shared files, keeps the latest revision of each
id and evaluates OSV's range semantics with ordinary version libraries.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import tarfile
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import zstandard

from stella.adapters.trivy.javadb import java_index_rows
from stella.adapters.trivy.osv import translate_osv
from tests.adapters.boltread import read_entries
from tests.adapters.conftest import boltchk  # noqa: F401  (the bbolt Tx.Check fixture)
from tests.adapters.trivy_oracle import DIVERGENCES, expected_findings
from tests.adapters.trivy_scan import compare_findings, findings_context, sbom_components, scan_sbom
from tests.services.registry import Registry
from tests.services.trivy import JarScenario, build_trivy_dbs, findings, make_scenario, run_trivy
from tests.support import require_tool, stella_cli, tree_digests

pytestmark = [pytest.mark.trivy, pytest.mark.slow]

TENANT = "acme"
T0 = "2026-11-27T00:00:00Z"
_SCANNED_TYPES = {"pypi", "npm", "maven", "golang", "composer"}
_ARTIFACT_FILES = {
    "db": ("data/db/trivy.db", "data/db/metadata.json", "data/db.tar.gz", "data/oci/index.json"),
    "java": (
        "data/java-db/trivy-java.db",
        "data/java-db/metadata.json",
        "data/javadb.tar.gz",
        "data/oci/index.json",
    ),
}


# --- inputs ----------------------------------------------------------------------------------


def _shared_sboms(shared: Path) -> list[Path]:
    folder = shared / "sboms" / "cyclonedx"
    return [
        path
        for path in sorted(folder.glob("*.json"))
        if {c.purl_type for c in sbom_components(json.loads(path.read_text()))} & _SCANNED_TYPES
    ]


def _scenario_advisory(scenario: JarScenario) -> dict[str, Any]:
    return {
        "id": scenario.vuln_id,
        "modified": "2024-04-01T00:00:00Z",
        "published": "2024-03-01T00:00:00Z",
        "summary": "widget-core parses untrusted input unsafely (stella test advisory)",
        "affected": [
            {
                "package": {"ecosystem": "Maven", "name": f"{scenario.group}:{scenario.artifact}"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": scenario.fixed}]}],
            }
        ],
        "database_specific": {"severity": "HIGH"},
    }


def _osv_lines(shared: Path) -> Iterator[bytes]:
    for path in sorted((shared / "advisories").glob("*.jsonl.zst")):
        with path.open("rb") as handle:
            yield from zstandard.ZstdDecompressor().stream_reader(handle).read().splitlines()


def _latest_revisions(lines: list[bytes]) -> list[dict[str, Any]]:
    """The latest revision of each OSV id (tie: larger digest of the received bytes), read independently."""
    best: dict[str, tuple[datetime, str, dict[str, Any]]] = {}
    for line in lines:
        record = json.loads(line)
        rank = (datetime.fromisoformat(record["modified"]), hashlib.sha256(line).hexdigest(), record)
        if record["id"] not in best or rank[:2] > best[record["id"]][:2]:
            best[record["id"]] = rank
    return [rank[2] for _id, rank in sorted(best.items())]


@pytest.fixture(scope="module")
def trivy() -> str:
    return require_tool("trivy")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> JarScenario:
    root = tmp_path_factory.mktemp("jar")
    found = make_scenario(root)
    inputs = root / "inputs"
    inputs.mkdir()
    (inputs / "widget-core.cdx.json").write_text(json.dumps(found.sbom))
    (inputs / "widget-core.osv.json").write_text(json.dumps(_scenario_advisory(found)))
    return found


@pytest.fixture(scope="module")
def oracle_records(shared_data: Path, scenario: JarScenario) -> list[dict[str, Any]]:
    lines = [*_osv_lines(shared_data), json.dumps(_scenario_advisory(scenario)).encode()]
    return [r for r in _latest_revisions(lines) if not r.get("withdrawn")]


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory, shared_data: Path, scenario: JarScenario) -> Path:
    root = tmp_path_factory.mktemp("ledger")
    folders = [str(shared_data / f) for f in ("advisories", "sboms", "vex")]
    inputs = str(scenario.scan_dir.parent / "inputs")
    stella_cli("ledger", "ingest", "--tenant", TENANT, "--ledger", str(root), "--ingested-at", T0, *folders, inputs, check=True)  # fmt: skip
    return root


def _export(ledger: Path, out: Path, profile: str, *extra: str, tenant: str = TENANT) -> Path:
    result = stella_cli(
        "export", "run", "--tenant", tenant, "--profile", profile, "--ledger", str(ledger), "--out", str(out), "--json", *extra,
        check=True,
    )  # fmt: skip
    return Path(json.loads(result.stdout)["bundle"])


@pytest.fixture(scope="module")
def bundles(ledger: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("out")
    return {"db": _export(ledger, out, "trivy:db"), "java": _export(ledger, out, "trivy:java-db")}


def _cache_from(bundles: Mapping[str, Path], cache: Path) -> Path:
    """A Trivy cache holding exactly the files the bundles carry for it (``data/db``, ``data/java-db``)."""
    shutil.copytree(bundles["db"] / "data" / "db", cache / "db")
    if "java" in bundles:
        shutil.copytree(bundles["java"] / "data" / "java-db", cache / "java-db")
    return cache


@pytest.fixture(scope="module")
def cache(bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _cache_from(bundles, tmp_path_factory.mktemp("trivy-cache"))


def _manifest(bundle: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((bundle / "export.json").read_bytes())
    return manifest


def _report(bundle: Path, name: str) -> list[dict[str, Any]]:
    with (bundle / "data" / "reports" / name).open("rb") as handle:
        return [
            json.loads(line)
            for line in zstandard.ZstdDecompressor().stream_reader(handle).read().splitlines()
        ]


# --- Trivy against the oracle -------------------------------------------------------------------


def _sbom_params() -> list[Any]:
    from tests.support import DATA

    return [pytest.param(path, id=path.name) for path in _shared_sboms(DATA)] if DATA.is_dir() else []


@pytest.mark.parametrize("sbom", _sbom_params())
def test_trivy_on_the_exported_db_equals_the_oracle(
    trivy: str, cache: Path, oracle_records: list[dict[str, Any]], sbom: Path, tmp_path: Path
) -> None:
    components = sbom_components(json.loads(sbom.read_text()))
    expected = expected_findings(oracle_records, components)
    actual = scan_sbom(trivy, cache, sbom, home=tmp_path / "home")
    diff, accepted = compare_findings(actual, expected, findings_context(oracle_records))
    print(f"\n{sbom.name}: trivy {len(actual)}, oracle {len(expected)}, accepted divergences {accepted}")
    if diff:
        listing = "\n".join(f"  {d.name}: {d.reason}" for d in DIVERGENCES)
        pytest.fail(
            f"{sbom.name}: Trivy (exported DB) and the OSV oracle disagree\n{diff}\naccepted:\n{listing}"
        )


@pytest.fixture(scope="module")
def synthetic(
    tmp_path_factory: pytest.TempPathFactory, shared_data: Path
) -> tuple[Path, list[dict[str, Any]]]:
    """A ledger of synthetic advisories placed around each SBOM's own versions (ids end in ``-S<n>``).

    The shared advisories barely touch npm, Maven and Composer; these records (the shapes
    of ``test_trivy_scan.synthetic_records``: pre-releases, ``last_affected``, listed
    versions, multi-range records) exercise those comparers through the whole export.
    """
    from tests.adapters.test_trivy_scan import synthetic_records

    root = tmp_path_factory.mktemp("synthetic")
    records = [
        {**record, "id": f"{record['id']}-S{index}", "modified": "2025-01-01T00:00:00Z"}
        for index, sbom in enumerate(_shared_sboms(shared_data))
        for record in synthetic_records(sbom_components(json.loads(sbom.read_text())))
    ]
    stream = root / "synthetic.osv.jsonl"
    stream.write_text("".join(json.dumps(r) + "\n" for r in records))
    ledger = root / "ledger"
    stella_cli("ledger", "ingest", "--tenant", "synth", "--ledger", str(ledger), "--ingested-at", T0, str(stream), check=True)  # fmt: skip
    return ledger, records


@pytest.mark.parametrize("sbom", _sbom_params())
def test_synthetic_ranges_through_the_export_equal_the_oracle(
    trivy: str, synthetic: tuple[Path, list[dict[str, Any]]], shared_data: Path, sbom: Path, tmp_path: Path
) -> None:
    """Each SBOM against a DB of its own synthetic records, chosen with an ``id`` selector.

    Per SBOM, not all at once: a shape built around one SBOM's version can be malformed
    for another SBOM's version of the same package (``1.9.5.1`` is no Go SemVer; a
    ``-rc.1`` suffix on a pseudo-version sorts above it), and how such ranges read is
    the adapter's concern (``tests/adapters``), not the export's.
    """
    ledger, all_records = synthetic
    suffix = f"-S{_shared_sboms(shared_data).index(sbom)}"
    records = [r for r in all_records if r["id"].endswith(suffix)]
    bundle = _export(ledger, tmp_path / "out", "trivy:db", "--selector", f"id=*{suffix}", tenant="synth")
    assert _manifest(bundle)["counts"] == {"advisory": len(records)}
    components = sbom_components(json.loads(sbom.read_text()))
    expected = expected_findings(records, components)
    actual = scan_sbom(trivy, _cache_from({"db": bundle}, tmp_path / "cache"), sbom, home=tmp_path / "home")
    diff, accepted = compare_findings(actual, expected, findings_context(records))
    print(f"\n{sbom.name} (synthetic): trivy {len(actual)}, oracle {len(expected)}, accepted {accepted}")
    if diff:
        pytest.fail(f"{sbom.name}: Trivy (exported synthetic DB) and the OSV oracle disagree\n{diff}")


def _rootfs(trivy: str, cache: Path, scenario: JarScenario, home: Path, *pull: str) -> list[tuple[str, ...]]:
    offline = () if pull else ("--skip-db-update", "--skip-java-db-update")
    args = ["rootfs", *offline, *pull, "--offline-scan", "--cache-dir", str(cache), str(scenario.scan_dir)]
    return findings(run_trivy(trivy, args, home))


def test_jar_without_pom_is_identified_through_the_exported_java_db(
    trivy: str, cache: Path, bundles: dict[str, Path], scenario: JarScenario, tmp_path: Path
) -> None:
    found = _rootfs(trivy, cache, scenario, tmp_path / "home")
    assert [(f[1], f[2], f[3], f[4], f[5]) for f in found] == [
        (f"{scenario.group}:{scenario.artifact}", scenario.version, scenario.vuln_id, scenario.fixed, "HIGH")
    ]
    # Control: the same trivy.db with a Java DB lacking the SHA-1 row finds nothing.
    control = build_trivy_dbs(scenario, tmp_path / "control", java_rows=False)
    empty_java = _cache_from({"db": bundles["db"]}, tmp_path / "control-cache")
    shutil.copytree(control["java-db"], empty_java / "java-db")
    assert _rootfs(trivy, empty_java, scenario, tmp_path / "home2") == []


@pytest.mark.registry
def test_pushed_bundles_pull_into_trivy_with_the_same_results(
    trivy: str,
    cache: Path,
    bundles: dict[str, Path],
    scenario: JarScenario,
    oci_registry: Registry,
    shared_data: Path,
    tmp_path: Path,
) -> None:
    refs = {"db": f"{oci_registry.address}/stella/e2e/trivy-db:2", "java": f"{oci_registry.address}/stella/e2e/trivy-java-db:1"}  # fmt: skip
    for name, ref in refs.items():
        pushed = json.loads(
            stella_cli("export", "push", str(bundles[name]), "--to", ref, "--json", check=True).stdout
        )
        assert pushed["digest"] == _manifest(bundles[name])["trivy"]["oci"]["manifestDigest"]
    # The receiving side of an air gap holds only the archive: it pushes the same artifact.
    archive = tmp_path / "db.tar.zst"
    stella_cli("export", "archive", str(bundles["db"]), "--out", str(archive), check=True)
    from_archive = stella_cli("export", "push", str(archive), "--to", f"{oci_registry.address}/stella/e2e/from-archive:2", "--json", check=True)  # fmt: skip
    assert (
        json.loads(from_archive.stdout)["digest"]
        == _manifest(bundles["db"])["trivy"]["oci"]["manifestDigest"]
    )
    # Asked to trust a key, push refuses an unsigned bundle before contacting the registry.
    stella_cli("keys", "generate", "--type", "ed25519", "--out", str(tmp_path / "k"), check=True)
    unsigned = stella_cli("export", "push", str(archive), "--to", f"{oci_registry.address}/stella/e2e/unsigned:2", "--key", str(tmp_path / "k.pub"))  # fmt: skip
    assert unsigned.returncode == 4 and "ERR_EXPORT_SIGNATURE" in unsigned.stderr, unsigned.stderr
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(
            f"http://{oci_registry.address}/v2/stella/e2e/unsigned/manifests/2", timeout=10
        )
    assert missing.value.code == 404
    pull = ("--db-repository", refs["db"], "--java-db-repository", refs["java"])
    offline = _rootfs(trivy, cache, scenario, tmp_path / "home")
    assert _rootfs(trivy, tmp_path / "pulled", scenario, tmp_path / "home2", *pull) == offline != []
    for name, db in (("db", "db/trivy.db"), ("java", "java-db/trivy-java.db")):
        assert (tmp_path / "pulled" / db).read_bytes() == (bundles[name] / "data" / db).read_bytes()
    sbom = shared_data / "sboms" / "cyclonedx" / "crapi.sbom-universal.cdx.json"
    fresh = tmp_path / "pulled-sbom"
    pulled_report = run_trivy(trivy, ["sbom", "--cache-dir", str(fresh), "--db-repository", refs["db"], str(sbom)], tmp_path / "home3")  # fmt: skip
    assert {(f[1], f[2], f[3]) for f in findings(pulled_report)} == scan_sbom(
        trivy, cache, sbom, home=tmp_path / "h4"
    )


# --- bundle shape, determinism, verification -------------------------------------------------------


def test_bundles_verify_and_bbolt_checks_the_db(
    bundles: dict[str, Path],
    boltchk: Callable[[Path], str],  # noqa: F811  (the fixture imported above)
) -> None:
    for bundle in bundles.values():
        assert stella_cli("export", "verify", str(bundle)).returncode == 0
    boltchk(bundles["db"] / "data" / "db" / "trivy.db")
    for name, db_file, tarball, version in (("db", "trivy.db", "db.tar.gz", 2), ("java", "trivy-java.db", "javadb.tar.gz", 1)):  # fmt: skip
        data = bundles[name] / "data"
        manifest = _manifest(bundles[name])
        with tarfile.open(data / tarball) as archive:
            members = archive.getmembers()
            layer_meta = json.loads(archive.extractfile("metadata.json").read())  # type: ignore[union-attr]
        assert [(m.name, m.uid, m.gid, m.mtime) for m in members] == [
            ("metadata.json", 0, 0, 0),
            (db_file, 0, 0, 0),
        ]
        cache_dir = "db" if name == "db" else "java-db"
        cache_meta = json.loads((data / cache_dir / "metadata.json").read_bytes())
        assert cache_meta["Version"] == layer_meta["Version"] == version
        assert cache_meta["UpdatedAt"] == manifest["generatedAt"] == cache_meta["DownloadedAt"]
        assert layer_meta["DownloadedAt"] == "0001-01-01T00:00:00Z"
        index = json.loads((data / "oci" / "index.json").read_bytes())
        oci_manifest = json.loads(
            (data / "oci" / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]).read_bytes()
        )
        (layer,) = oci_manifest["layers"]
        assert layer["mediaType"] == manifest["trivy"]["oci"]["layerMediaType"]
        assert layer["annotations"]["org.opencontainers.image.title"] == tarball
        assert layer["digest"] == "sha256:" + hashlib.sha256((data / tarball).read_bytes()).hexdigest()
        listed = {c["path"] for c in manifest["contents"]}
        on_disk = {
            p.relative_to(bundles[name]).as_posix()
            for p in (bundles[name] / "data").rglob("*")
            if p.is_file()
        }
        assert listed == on_disk


def test_two_exports_and_two_runners_give_identical_bytes(
    ledger: Path, bundles: dict[str, Path], tmp_path: Path
) -> None:
    for name, profile in (("db", "trivy:db"), ("java", "trivy:java-db")):
        first = tree_digests(bundles[name])
        again = _export(ledger, tmp_path / f"again-{name}", profile)
        workers = _export(
            ledger,
            tmp_path / f"mp-{name}",
            profile,
            "--direct_running_mode=multi_processing",
            "--direct_num_workers=2",
        )
        assert again.name == workers.name == bundles[name].name
        assert tree_digests(again) == first
        assert tree_digests(workers) == first
        assert set(_ARTIFACT_FILES[name]) <= set(first)
        assert sum(path.startswith("data/oci/blobs/") for path in first) == 3


def test_workers_2_merge_the_db_in_key_ranges_on_helpers_and_give_the_same_bytes(
    tmp_path: Path,
    boltchk: Callable[[Path], str],  # noqa: F811
) -> None:
    """Large enough (~250,000 DB items) for the artifact step to reduce key ranges on helper processes."""
    ledger = tmp_path / "ledger"
    stella_cli("ledger", "generate", "--tenant", TENANT, "--records", "100000", "--seed", "7", "--ledger", str(ledger), "--ingested-at", T0, "--advisories-only", check=True)  # fmt: skip
    one = _export(ledger, tmp_path / "one", "trivy:db", "--workers", "1")
    two = stella_cli(
        "export", "run", "--tenant", TENANT, "--profile", "trivy:db", "--ledger", str(ledger), "--out", str(tmp_path / "two"), "--workers", "2", "-v",
        check=True,
    )  # fmt: skip
    assert "reducing 6 key ranges on 2 helper processes" in two.stderr
    assert tree_digests(tmp_path / "two" / one.name) == tree_digests(one)
    boltchk(tmp_path / "two" / one.name / "data" / "db" / "trivy.db")
    assert not [p for p in (tmp_path / "two").rglob("*") if "ranges-" in p.name or p.name.startswith(".")]


# --- what was not translated -------------------------------------------------------------------------


def test_untranslated_counts_add_up_per_record(
    bundles: dict[str, Path], shared_data: Path, scenario: JarScenario
) -> None:
    expected: Counter[tuple[str, str]] = Counter()
    for line in [*_osv_lines(shared_data), json.dumps(_scenario_advisory(scenario)).encode()]:
        document = json.loads(line)
        for problem in translate_osv(document, upstream_id=document["id"]).untranslated:
            expected[(document["id"], problem.reason)] += 1
    report = _report(bundles["db"], "untranslated.jsonl.zst")
    listed = Counter((item["id"], item["reason"]) for item in report)
    assert listed == expected
    per_reason: Counter[str] = Counter()
    for (_id, reason), count in expected.items():
        per_reason[reason] += count
    manifest = _manifest(bundles["db"])
    assert manifest["untranslated"] == dict(sorted(per_reason.items()))
    assert sum(manifest["untranslated"].values()) == len(report)
    assert [(r["reason"], r["id"]) for r in report] == sorted((r["reason"], r["id"]) for r in report)
    assert (
        manifest["trivy"]["supersededRevisions"] == 0 == len(_report(bundles["db"], "superseded.jsonl.zst"))
    )
    print("\nuntranslated per reason:", json.dumps(manifest["untranslated"], sort_keys=True))


def _sbom_documents(shared: Path) -> Iterator[tuple[dict[str, Any], str]]:
    """Every SBOM among the shared files, told apart by content as the formats define it.

    A CycloneDX BOM is an SBOM unless it lists ``vulnerabilities`` (then it is VEX), wherever
    the file lies: ``vex/cyclonedx-vex`` holds the target BOM of a VEX example.
    """
    for path in sorted(shared.rglob("*.json")):
        document = json.loads(path.read_bytes())
        if document.get("bomFormat") == "CycloneDX" and not document.get("vulnerabilities"):
            yield document, "cyclonedx"
        elif "spdxVersion" in document:
            yield document, "spdx"


def test_java_db_rows_and_skipped_components(
    bundles: dict[str, Path], shared_data: Path, scenario: JarScenario
) -> None:
    expected: Counter[str] = Counter()
    rows = set()
    for document, fmt in [*_sbom_documents(shared_data), (scenario.sbom, "cyclonedx")]:
        found, skipped = java_index_rows(document, fmt)
        rows.update((r.group_id, r.artifact_id, r.version, r.sha1) for r in found)
        expected.update(s.reason for s in skipped)
    manifest = _manifest(bundles["java"])
    by_sha1 = {sha1 for *_gav, sha1 in rows}
    conflicts = len(rows) - len(by_sha1)
    assert manifest["skipped"] == dict(sorted((expected + Counter({"sha1-conflict": conflicts})).items()))
    with closing(sqlite3.connect(bundles["java"] / "data" / "java-db" / "trivy-java.db")) as db:
        stored = db.execute(
            "SELECT a.group_id, a.artifact_id, i.version, i.archive_type FROM indices i JOIN artifacts a ON a.id = i.artifact_id WHERE i.sha1 = ?",
            (bytes.fromhex(scenario.jar_sha1),),
        ).fetchall()
        (count,) = db.execute("SELECT count(*) FROM indices").fetchone()
    assert stored == [(scenario.group, scenario.artifact, scenario.version, "jar")]
    assert count == len(by_sha1) == manifest["trivy"]["entries"]
    print("\njava-db skipped per reason:", json.dumps(manifest["skipped"], sort_keys=True))


# --- revisions, options, push refusals (small ledgers) ------------------------------------------------


def _advisory(record_id: str, modified: str, package: str, fixed: str, **extra: Any) -> dict[str, Any]:
    events = [{"introduced": "0"}, {"fixed": fixed}]
    affected = [
        {
            "package": {"ecosystem": "PyPI", "name": package},
            "ranges": [{"type": "ECOSYSTEM", "events": events}],
        }
    ]
    return {"id": record_id, "modified": modified, "affected": affected, **extra}


def test_latest_revision_wins_in_the_exported_db(tmp_path: Path, boltchk: Callable[[Path], str]) -> None:  # noqa: F811
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    docs = {
        "a1": _advisory("PYSEC-9001", "2024-01-01T00:00:00Z", "alpha", "1.0", aliases=["CVE-2024-9001"]),
        "a2": _advisory("PYSEC-9001", "2024-03-01T00:00:00Z", "beta", "2.0"),
        "b1": _advisory("PYSEC-9002", "2024-01-01T00:00:00Z", "gamma", "1.0"),
        "b2": _advisory(
            "PYSEC-9002", "2024-02-01T00:00:00Z", "gamma", "1.0", withdrawn="2024-02-01T00:00:00Z"
        ),
    }
    for name, doc in docs.items():
        (inputs / f"{name}.osv.json").write_text(json.dumps(doc))
    ledger = tmp_path / "ledger"
    stella_cli("ledger", "ingest", "--tenant", "revs", "--ledger", str(ledger), "--ingested-at", T0, str(inputs), check=True)  # fmt: skip
    bundle = _export(ledger, tmp_path / "out", "trivy:db", "--option", "next-update=3d", tenant="revs")
    db_file = bundle / "data" / "db" / "trivy.db"
    boltchk(db_file)
    keys = [(*path, key) for path, key, _value in read_entries(db_file)]
    packages = {(k[1], k[2]) for k in keys if len(k) == 3}
    assert packages == {(b"beta", b"PYSEC-9001")}
    assert (b"vulnerability", b"PYSEC-9001") in keys and not any(b"CVE-2024-9001" in k for k in keys)
    manifest = _manifest(bundle)
    assert manifest["untranslated"] == {"withdrawn": 1}
    assert manifest["trivy"]["supersededRevisions"] == 2
    assert {(s["id"], s["modified"]) for s in _report(bundle, "superseded.jsonl.zst")} == {
        ("PYSEC-9001", "2024-01-01T00:00:00Z"),
        ("PYSEC-9002", "2024-01-01T00:00:00Z"),
    }
    assert manifest["options"]["nextUpdate"] == "3d"
    assert (
        json.loads((bundle / "data" / "db" / "metadata.json").read_bytes())["NextUpdate"]
        == "2024-03-04T00:00:00Z"
    )
    as_of = _export(ledger, tmp_path / "out2", "trivy:db", "--as-of", "2025-05-05T00:00:00Z", tenant="revs")
    meta = json.loads((as_of / "data" / "db" / "metadata.json").read_bytes())
    assert (meta["UpdatedAt"], meta["NextUpdate"]) == ("2025-05-05T00:00:00Z", "2025-05-06T00:00:00Z")
    bad = stella_cli("export", "run", "--tenant", "revs", "--profile", "trivy:db", "--ledger", str(ledger), "--out", str(tmp_path / "bad"), "--option", "next-update=soon")  # fmt: skip
    assert bad.returncode == 2 and "next-update" in bad.stderr
    assert not any((tmp_path / "bad").iterdir())


def test_push_refuses_unlisted_hosts_and_missing_bundles(tmp_path: Path) -> None:
    remote = "registry.example.com:5000/stella/trivy-db:2"
    denied = stella_cli("export", "push", str(tmp_path), "--to", remote)
    assert (
        denied.returncode == 8 and "ERR_EXPORT_EGRESS_DENIED" in denied.stderr
    )  # refused before anything else
    allowed = stella_cli(
        "export", "push", str(tmp_path), "--to", remote, "--allow-host", "registry.example.com"
    )
    assert (
        allowed.returncode == 2 and "is not a bundle" in allowed.stderr
    )  # past egress: not a bundle (a usage error, not tampering), nothing sent
    missing = stella_cli("export", "push", str(tmp_path / "none"), "--to", "127.0.0.1:1/stella/trivy-db:2")
    assert missing.returncode == 6 and "ERR_EXPORT_NOT_FOUND" in missing.stderr
