"""json:raw end to end through the real CLI: completeness, AOC, zstd CLI, determinism, verify."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
import zstandard

from tests.support import export, ingest, require_tool, run_args, stella_cli, tree_digests

FOLDERS = ("advisories", "sboms", "vex")


def _ingest(ledger: Path, shared_data: Path, order: tuple[str, ...] = FOLDERS) -> None:
    ingest(ledger, *(shared_data / f for f in order))


def _export(ledger: Path, out: Path, *extra: str) -> Path:
    return export(ledger, out, *extra)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    root = tmp_path_factory.mktemp("ledger")
    _ingest(root, shared_data)
    return root


@pytest.fixture(scope="module")
def full_bundle(tmp_path_factory: pytest.TempPathFactory, ledger: Path) -> Path:
    return _export(ledger, tmp_path_factory.mktemp("out"))


def _source_documents(shared_data: Path) -> dict[str, object]:
    """Every shared document keyed the way ingestion labels sources, read independently."""
    found: dict[str, object] = {}
    for folder in FOLDERS:
        for path in sorted((shared_data / folder).rglob("*")):
            label = f"{folder}/{path.relative_to(shared_data / folder).as_posix()}"
            if path.name.endswith(".jsonl.zst"):
                with path.open("rb") as handle:
                    lines = zstandard.ZstdDecompressor().stream_reader(handle).read().splitlines()
                for number, line in enumerate(lines, start=1):
                    found[f"{label}#{number}"] = json.loads(line)
            elif path.name.endswith(".json"):
                found[label] = json.loads(path.read_bytes())
    return found


def _exported_lines(bundle: Path, zstd: str) -> list[dict[str, object]]:
    records = []
    for shard in sorted((bundle / "data").rglob("*.jsonl.zst")):
        text = subprocess.run([zstd, "-dc", str(shard)], capture_output=True, check=True).stdout.decode()
        assert text.endswith("\n")
        records.extend(json.loads(line) for line in text.splitlines())
    return records


def test_full_export_verifies_and_holds_every_document_unchanged(
    full_bundle: Path, shared_data: Path
) -> None:
    zstd = require_tool("zstd")
    verify = stella_cli("export", "verify", str(full_bundle))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    sources = _source_documents(shared_data)
    exported = _exported_lines(full_bundle, zstd)
    assert len(exported) == len(sources) == 9744
    by_source = {r["source"]: r for r in exported}
    assert set(by_source) == set(sources)
    for label, document in sources.items():
        # AOC: the raw document is exactly the received JSON value; derived data only in linkset
        assert by_source[label]["document"] == document, label
    manifest = json.loads((full_bundle / "export.json").read_bytes())
    assert manifest["counts"] == {"advisory": 9690, "sbom": 13, "vex": 41}

    # generatedAt: the newest record time, each record's `modified` capped at its receipt
    # (two PyPA advisories claim to be modified in 2027).
    def at(moment: str) -> datetime:
        return datetime.fromisoformat(moment.replace("Z", "+00:00"))

    times = [min(at(r["modified"] or r["ingestedAt"]), at(r["ingestedAt"])) for r in exported]
    assert any(r["modified"] and at(r["modified"]) > at(r["ingestedAt"]) for r in exported)
    assert at(manifest["generatedAt"]) == max(times)


def test_shards_are_sorted_by_record_key_and_match_manifest(full_bundle: Path) -> None:
    zstd = require_tool("zstd")
    manifest = json.loads((full_bundle / "export.json").read_bytes())
    for entry in manifest["contents"]:
        text = subprocess.run(
            [zstd, "-dc", str(full_bundle / entry["path"])], capture_output=True, check=True
        ).stdout
        lines = [json.loads(line) for line in text.splitlines()]
        assert len(lines) == entry["records"]
        keys = [(r["kind"], r["id"], r["modified"] or "", r["digest"]) for r in lines]
        assert keys == sorted(keys)
        digest = subprocess.run(
            ["sha256sum", str(full_bundle / entry["path"])], capture_output=True, text=True, check=True
        )
        assert "sha256:" + digest.stdout.split()[0] == entry["digest"]


def test_selected_export_holds_exactly_the_selection(ledger: Path, tmp_path: Path, shared_data: Path) -> None:
    zstd = require_tool("zstd")
    bundle = _export(ledger, tmp_path, "--selector", "kind=advisory", "--selector", "ecosystem=PyPI")
    expected = {
        doc["id"]
        for doc in _source_documents(shared_data).values()
        if isinstance(doc, dict)
        and "affected" in doc
        and any(a.get("package", {}).get("ecosystem") == "PyPI" for a in doc["affected"])
    }
    exported = _exported_lines(bundle, zstd)
    assert {r["id"] for r in exported} == expected
    assert len(exported) == len(expected) == 3539
    manifest = json.loads((bundle / "export.json").read_bytes())
    assert manifest["selectors"] == {"ecosystem": ["PyPI"], "kind": ["advisory"]}


def test_two_runs_are_byte_identical(ledger: Path, full_bundle: Path, tmp_path: Path) -> None:
    again = _export(ledger, tmp_path)
    assert again.name == full_bundle.name
    assert tree_digests(again) == tree_digests(full_bundle)


@pytest.mark.slow
def test_multiprocessing_runner_gives_identical_bytes(
    ledger: Path, full_bundle: Path, tmp_path: Path
) -> None:
    bundle = _export(ledger, tmp_path, "--workers", "2")
    assert tree_digests(bundle) == tree_digests(full_bundle)


@pytest.mark.slow
def test_ingestion_order_does_not_change_the_bundle(
    full_bundle: Path, tmp_path: Path, shared_data: Path
) -> None:
    other = tmp_path / "ledger"
    _ingest(other, shared_data, order=tuple(reversed(FOLDERS)))
    bundle = _export(other, tmp_path / "out")
    assert (bundle / "provenance.json").read_text() == (full_bundle / "provenance.json").read_text()
    assert tree_digests(bundle) == tree_digests(full_bundle)


def test_separate_ingests_in_any_order_give_the_same_bundle(
    full_bundle: Path, tmp_path: Path, shared_data: Path
) -> None:
    """One ingest call per folder, in two orders: segments are numbered differently, bundles are not."""
    bundles = []
    for order in (FOLDERS, tuple(reversed(FOLDERS))):
        ledger = tmp_path / f"ledger-{order[0]}"
        for folder in order:
            ingest(ledger, shared_data / folder)
        segment_names = sorted(p.name for p in ledger.rglob("*.avro"))
        bundles.append((_export(ledger, tmp_path / f"out-{order[0]}"), segment_names))
    (first, first_segments), (second, second_segments) = bundles
    assert first_segments != second_segments  # same content, other sequence numbers
    assert tree_digests(first) == tree_digests(second)
    assert (first / "export.json").read_bytes() == (full_bundle / "export.json").read_bytes()


def test_rerun_into_same_folder_reports_unchanged(ledger: Path, tmp_path: Path) -> None:
    first = _export(ledger, tmp_path, "--selector", "kind=vex")
    result = stella_cli(
        *run_args(ledger, tmp_path),
        "--selector",
        "kind=vex",
        "--json",
        check=True,
    )
    assert json.loads(result.stdout)["unchanged"] is True
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no staging debris left behind


def test_verify_names_each_tampering(full_bundle: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(full_bundle, bundle)
    shard = next((bundle / "data").rglob("*.jsonl.zst"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    (bundle / "data" / "extra.txt").write_text("smuggled")
    missing = sorted((bundle / "data").rglob("*.jsonl.zst"))[-1]
    missing.unlink()
    result = stella_cli("export", "verify", str(bundle), "--json")
    assert result.returncode == 3
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "ERR_EXPORT_CHECKSUM" and error["details"]["ok"] is False
    text = result.stdout
    assert shard.relative_to(bundle).as_posix() in text and "digest" in text
    assert "data/extra.txt" in text and "not listed" in text
    assert missing.relative_to(bundle).as_posix() in text and "missing" in text
    human = stella_cli("export", "verify", str(bundle))
    assert human.returncode == 3 and "FAILED" in human.stdout and "data/extra.txt" in human.stdout


def test_cli_errors_map_to_documented_exit_codes(ledger: Path, tmp_path: Path) -> None:
    base = ["export", "run", "--tenant", "acme", "--ledger", str(ledger), "--out", str(tmp_path)]
    assert stella_cli(*base, "--profile", "json:raw", "--selector", "colour=blue").returncode == 2
    assert stella_cli(*base, "--profile", "json:nope").returncode == 2
    typo = stella_cli(*base, "--profile", "json:raw", "--option", "next-update=1d")
    assert typo.returncode == 2 and "profile json:raw has no such option" in typo.stderr
    assert stella_cli(*base, "--profile", "trivy:db", "--option", "nxt-update=1d").returncode == 2
    no_base = stella_cli(*base, "--profile", "mirror:delta")  # a delta needs its base: a usage error
    assert no_base.returncode == 2 and "base=" in no_base.stderr
    missing = stella_cli(
        "export",
        "run",
        "--tenant",
        "ghost",
        "--ledger",
        str(ledger),
        "--out",
        str(tmp_path),
        "--profile",
        "json:raw",
    )
    assert missing.returncode == 6 and "ghost" in missing.stderr
    assert stella_cli("export", "verify", str(tmp_path / "nothing")).returncode == 6
    assert not any(p.name.startswith(".stella-staging-") for p in tmp_path.iterdir())
