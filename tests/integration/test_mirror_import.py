"""stella mirror import | status through the real CLI: chains, refusals, dry run, encryption, ledger round trip."""

from __future__ import annotations

import json
import os
import random
import shutil
from collections import Counter
from pathlib import Path

import pytest

from stella.adapters.mirror.delta import ADD, CHANGE, REMOVE, Change
from stella.adapters.mirror.items import items_of_line
from stella.adapters.mirror.records import key_of_envelope, line_digest
from stella.bundle.manifest import ContentEntry
from stella.canonical import dumps
from stella.mirror import reshard
from stella.mirror.importer import state_lines
from stella.mirror.patch import patch_state
from stella.mirror.rebuild import write_sorted
from stella.mirror.state import current_state
from stella.sorting import shard_count
from tests.integration.mirror_fixtures import NOW, MirrorHistory, mirror_digest, mirror_import
from tests.support import export, stella_cli, tree_digests


def _state(mirror: Path) -> dict[str, object]:
    value: dict[str, object] = json.loads((mirror / "current" / "mirror.json").read_bytes())
    return value


def _data(mirror: Path) -> dict[str, str]:
    return tree_digests(mirror / "current" / "data")


def _group_rows(records: dict[bytes, bytes]) -> Counter[str]:
    """Items per group (raw kind or index) that a state of these records holds: shard counts follow them."""
    return Counter(group for line in records.values() for group, _k, _v in items_of_line(line, where="state"))


def _rebuild(records: dict[bytes, bytes], out: Path, per_shard: int) -> list[ContentEntry]:
    """A state written from all ``records`` at once: the bytes a patch or re-shard must reproduce."""
    (out.parent / f"runs-{out.name}").mkdir()
    items = (item for key in sorted(records) for item in items_of_line(records[key], where="state"))
    return write_sorted(
        items, temp_dir=str(out.parent / f"runs-{out.name}"), out_root=str(out), records_per_shard=per_shard
    )


@pytest.fixture(scope="module")
def chained(mirror_history: MirrorHistory, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Mirrors after each step of the chain (copies), and the one imported from full2 alone."""
    h = mirror_history
    root = tmp_path_factory.mktemp("mirrors")
    steps: dict[str, Path] = {}
    live = root / "live"
    for name, bundle in (("full0", h.full0), ("delta1", h.delta1), ("delta2", h.delta2)):
        assert mirror_import(bundle, live, h.trust_root) == (0, "")
        steps[name] = root / name
        shutil.copytree(live, steps[name], symlinks=True)
    steps["full2"] = root / "full2"
    assert mirror_import(h.full2, steps["full2"], h.trust_root) == (0, "")
    return steps


def test_full_then_deltas_equals_the_newer_full(chained: dict[str, Path]) -> None:
    chain, fresh = chained["delta2"], chained["full2"]
    assert _data(chain) == _data(fresh)
    left, right = _state(chain), _state(fresh)
    for field in ("contents", "recordSet", "counts", "tenant", "name", "generatedAt"):
        assert left[field] == right[field], field
    # The chain really changed things: records were added and removed on the way.
    assert _state(chained["full0"])["recordSet"] != left["recordSet"]
    log = [
        json.loads(line) for line in (chain / "current" / "appliedExportIds.log").read_bytes().splitlines()
    ]
    assert [entry["mode"] for entry in log] == ["full", "delta", "delta"]
    assert [entry["sequence"] for entry in log] == [1, 2, 3]
    # Append-only: each state's log extends the previous state's log.
    before = (chained["delta1"] / "current" / "appliedExportIds.log").read_bytes()
    assert (chain / "current" / "appliedExportIds.log").read_bytes().startswith(before)


def test_the_mirror_holds_exactly_the_selected_records(chained: dict[str, Path]) -> None:
    ids = {json.loads(line)["id"] for _where, line in state_lines(chained["delta2"] / "current")}
    assert "PSF-2007-1" not in ids and not any(i.startswith("PSF-2019-") for i in ids)
    assert any(i.startswith("GHSA-") for i in ids)
    assert "PSF-2007-1" in {json.loads(line)["id"] for _w, line in state_lines(chained["full0"] / "current")}


@pytest.mark.parametrize(
    ("start", "bundle", "code"),
    [
        ("delta1", "delta1", "ERR_EXPORT_MIRROR_ROLLBACK"),  # replay
        ("full2", "full0", "ERR_EXPORT_MIRROR_ROLLBACK"),  # rollback to an older full
        ("delta2", "delta1", "ERR_EXPORT_MIRROR_ROLLBACK"),  # an old delta again, out of order
        ("full0", "delta2", "ERR_EXPORT_MIRROR_CHAIN"),  # delta1 skipped
        ("full2", "delta2", "ERR_EXPORT_MIRROR_ROLLBACK"),  # not newer than the state
        ("empty", "delta1", "ERR_EXPORT_MIRROR_CHAIN"),  # a delta needs a base
    ],
)
def test_refusals_leave_the_mirror_unchanged(
    start: str,
    bundle: str,
    code: str,
    chained: dict[str, Path],
    mirror_history: MirrorHistory,
    tmp_path: Path,
) -> None:
    mirror = tmp_path / "mirror"
    if start != "empty":
        shutil.copytree(chained[start], mirror, symlinks=True)
    before = mirror_digest(mirror)
    returncode, error = mirror_import(getattr(mirror_history, bundle), mirror, mirror_history.trust_root)
    assert (returncode, error) == (18 if code.endswith("ROLLBACK") else 20, code)
    assert mirror_digest(mirror) == before or (start == "empty" and not (mirror / "current").exists())


def test_expired_bundles_are_refused_at_the_import_clock(
    chained: dict[str, Path], mirror_history: MirrorHistory, tmp_path: Path
) -> None:
    mirror = tmp_path / "mirror"
    shutil.copytree(chained["full0"], mirror, symlinks=True)
    before = mirror_digest(mirror)
    expires = json.loads(
        (
            mirror_history.delta1.parent / mirror_history.delta1.name.removesuffix(".tar.zst") / "export.json"
        ).read_bytes()
    )["mirror"]["expires"]
    result = stella_cli(
        "mirror", "import", str(mirror_history.delta1), "--into", str(mirror),
        "--trust-root", str(mirror_history.trust_root), "--now", "2027-06-01T00:00:00Z",
    )  # fmt: skip
    assert (
        result.returncode == 19 and "ERR_EXPORT_MIRROR_EXPIRED" in result.stderr and expires in result.stderr
    )
    assert mirror_digest(mirror) == before


def test_another_tenant_or_mirror_name_is_refused(
    chained: dict[str, Path], mirror_history: MirrorHistory, shared_data: Path, tmp_path: Path
) -> None:
    h = mirror_history
    sign = ("--sign-key", str(h.keys.ec_key), "--archive", "--option", "sequence=50", "--as-of", NOW)
    other_name = export(h.ledger, tmp_path / "out", *sign, "--option", "name=lab", profile="mirror:full")
    beta_ledger = tmp_path / "beta-ledger"
    stella_cli(
        "ledger", "ingest", "--tenant", "beta", "--ledger", str(beta_ledger), "--ingested-at", NOW,
        str(shared_data / "advisories" / "osv-psf.jsonl.zst"), check=True,
    )  # fmt: skip
    other_tenant = export(beta_ledger, tmp_path / "beta", *sign, tenant="beta", profile="mirror:full")
    mirror = tmp_path / "mirror"
    shutil.copytree(chained["delta2"], mirror, symlinks=True)
    before = mirror_digest(mirror)
    for bundle in (other_name, other_tenant):
        assert mirror_import(Path(f"{bundle}.tar.zst"), mirror, h.trust_root) == (
            21,
            "ERR_EXPORT_MIRROR_SCOPE",
        )
    assert mirror_digest(mirror) == before


def test_dry_run_reports_and_changes_nothing(
    chained: dict[str, Path], mirror_history: MirrorHistory, tmp_path: Path
) -> None:
    mirror = tmp_path / "mirror"
    shutil.copytree(chained["delta1"], mirror, symlinks=True)
    before = mirror_digest(mirror)
    result = stella_cli(
        "mirror", "import", str(mirror_history.delta2), "--into", str(mirror), "--trust-root",
        str(mirror_history.trust_root), "--now", NOW, "--dry-run", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    manifest = json.loads(
        (
            mirror_history.out / mirror_history.delta2.name.removesuffix(".tar.zst") / "export.json"
        ).read_bytes()
    )
    assert report["dryRun"] and {k: report[k] for k in ("added", "changed", "removed")} == {
        k: manifest["delta"][k] for k in ("added", "changed", "removed")
    }
    assert report["removed"] > 0 and report["added"] > 0
    assert mirror_digest(mirror) == before
    # A full bundle's dry run diffs record indexes: full2 over delta1's state = delta2's changes.
    result = stella_cli(
        "mirror", "import", str(mirror_history.full2), "--into", str(mirror), "--trust-root",
        str(mirror_history.trust_root), "--now", NOW, "--dry-run", "--json",
    )  # fmt: skip
    full = json.loads(result.stdout)
    assert {k: full[k] for k in ("added", "changed", "removed")} == {
        k: report[k] for k in ("added", "changed", "removed")
    }
    assert mirror_digest(mirror) == before


def test_status_reports_the_state_and_freshness(chained: dict[str, Path]) -> None:
    result = stella_cli("mirror", "status", str(chained["delta2"]), "--now", NOW, "--json", check=True)
    status = json.loads(result.stdout)
    state = _state(chained["delta2"])
    assert (status["exportId"], status["sequence"], status["expired"]) == (state["exportId"], 3, False)
    assert len(status["applied"]) == 3
    later = stella_cli("mirror", "status", str(chained["delta2"]), "--now", "2030-01-01T00:00:00Z", "--json")
    assert json.loads(later.stdout)["expired"] is True


def test_unsigned_and_wrongly_signed_bundles_are_refused(
    mirror_history: MirrorHistory, tmp_path: Path
) -> None:
    h = mirror_history
    unsigned = export(h.ledger, tmp_path / "u", "--archive", profile="mirror:full")
    rogue = export(
        h.ledger, tmp_path / "r", "--archive", "--sign-key", str(h.keys.rogue_key), profile="mirror:full"
    )
    mirror = tmp_path / "mirror"
    assert mirror_import(Path(f"{unsigned}.tar.zst"), mirror, h.trust_root) == (4, "ERR_EXPORT_SIGNATURE")
    assert mirror_import(Path(f"{rogue}.tar.zst"), mirror, h.trust_root)[1] in (
        "ERR_EXPORT_TRUST",
        "ERR_EXPORT_SIGNATURE",
    )
    assert not (mirror / "current").exists()


def test_encrypted_bundles_import_with_an_identity(mirror_history: MirrorHistory, tmp_path: Path) -> None:
    h = mirror_history
    bundle = export(
        h.ledger, tmp_path / "enc", "--archive", "--sign-key", str(h.keys.ec_key), "--encrypt-to", h.keys.age_recipient,
        "--option", "expires=7d", "--option", "sequence=9", "--as-of", "2026-11-29T00:00:00Z", *(a for s in h.selectors for a in ("--selector", s)),
        profile="mirror:full",
    )  # fmt: skip
    mirror = tmp_path / "mirror"
    archive = Path(f"{bundle}.tar.zst")
    assert mirror_import(archive, mirror, h.trust_root)[0] == 2  # no identity: a usage error
    assert not (mirror / "current").exists()
    assert mirror_import(archive, mirror, h.trust_root, "--identity", str(h.keys.age_identity)) == (0, "")
    plain = tmp_path / "plain"
    assert mirror_import(h.full2, plain, h.trust_root) == (0, "")
    assert _data(mirror) == _data(plain)


def test_ledger_round_trip_gives_the_same_json_raw_export(
    chained: dict[str, Path], mirror_history: MirrorHistory, tmp_path: Path
) -> None:
    h = mirror_history
    far = tmp_path / "far-ledger"
    report = stella_cli(
        "ledger", "ingest", "--tenant", "acme", "--ledger", str(far), "--from-mirror", str(chained["delta2"]), "--json",
        check=True,
    )  # fmt: skip
    assert json.loads(report.stdout)["added"]
    selection = tuple(a for s in h.selectors for a in ("--selector", s))
    near_bundle = export(h.ledger, tmp_path / "near", *selection)
    far_bundle = export(far, tmp_path / "far", *selection)
    near, far_files = tree_digests(near_bundle), tree_digests(far_bundle)
    assert {p: d for p, d in near.items() if p != "provenance.json"} == {
        p: d for p, d in far_files.items() if p != "provenance.json"
    }
    # Loading the same mirror again adds nothing (digests are the ledger's identity).
    again = stella_cli(
        "ledger", "ingest", "--tenant", "acme", "--ledger", str(far), "--from-mirror", str(chained["delta2"]), "--json",
        check=True,
    )  # fmt: skip
    assert json.loads(again.stdout)["added"] == 0


def test_a_delta_rewrites_only_the_shards_it_touches(chained: dict[str, Path], tmp_path: Path) -> None:
    """Removing one advisory: the advisory shard and the indexes it appears in are rewritten, the SBOM and VEX
    shards are hard links to the old state's files, and the result is the bytes of a rebuild from all records."""
    state = current_state(chained["full0"])
    assert state is not None
    contents = [ContentEntry.from_json(c) for c in state.value["contents"]]
    per_shard = int(state.value["recordsPerShard"])
    lines = {key_of_envelope(json.loads(line)): line for _where, line in state_lines(state.path)}
    gone = next(key for key in sorted(lines) if key.startswith(b"advisory\x00"))
    changes = {gone: Change(gone, REMOVE, None, line_digest(lines[gone]))}
    (tmp_path / "spill").mkdir()
    patched = patch_state(
        state.path, contents, changes, {}, tmp_path / "patched", records_per_shard=per_shard,
        temp_dir=tmp_path / "spill",
    )  # fmt: skip
    assert patched is not None  # the proportional path, not the fallback rebuild
    (tmp_path / "runs").mkdir()
    rebuilt = write_sorted(
        (item for key, line in lines.items() if key != gone for item in items_of_line(line, where="state")),
        temp_dir=str(tmp_path / "runs"), out_root=str(tmp_path / "rebuilt"), records_per_shard=per_shard,
    )  # fmt: skip
    assert patched == rebuilt
    assert tree_digests(tmp_path / "patched") == tree_digests(tmp_path / "rebuilt")
    linked = {e.path for e in patched if os.path.samefile(tmp_path / "patched" / e.path, state.path / e.path)}
    assert {p.split("/")[2] for p in linked} >= {"sboms", "vex"}
    assert not any(p.startswith(("data/raw/advisories/", "data/indexes/records/")) for p in linked)


def test_a_delta_over_many_shards_patches_to_the_bytes_of_a_rebuild(
    chained: dict[str, Path], tmp_path: Path
) -> None:
    """Removals, changed provenance and new revisions (modified before and after the held one, so the
    index order turns on ``modified``) spread over several shards per group: the patched state is the
    rebuild's bytes, and shards nothing lands in are linked."""
    state = current_state(chained["full0"])
    assert state is not None
    lines = {key_of_envelope(json.loads(line)): line for _where, line in state_lines(state.path)}
    rng = random.Random(8)
    keys = sorted(k for k in lines if k.startswith(b"advisory\x00"))  # small records: few rows each
    changes: dict[bytes, Change] = {}
    carried: dict[bytes, bytes] = {}
    for key in rng.sample(keys, 9):  # removals
        changes[key] = Change(key, REMOVE, None, line_digest(lines[key]))
    for key in rng.sample([k for k in keys if k not in changes], 4):  # the same record, other provenance
        line = dumps({**json.loads(lines[key]), "ingestedAt": "2026-12-01T00:00:00Z"})
        changes[key] = Change(key, CHANGE, line_digest(line), line_digest(lines[key]))
        carried[key] = line
    for number, key in enumerate(rng.sample([k for k in keys if k not in changes], 9)):  # new revisions
        envelope = json.loads(lines[key])
        modified = ("2000-01-01T00:00:00Z", "2099-01-01T00:00:00Z")[number % 2]
        line = dumps({**envelope, "modified": modified, "digest": f"sha256:{number:064x}"})
        new_key = key_of_envelope(json.loads(line))
        changes[new_key] = Change(new_key, ADD, line_digest(line), None)
        carried[new_key] = line
    kept = {k: v for k, v in lines.items() if k not in changes} | carried

    before, after = _group_rows(lines), _group_rows(kept)
    per_shard = next(  # the smallest shard size (the most shards) at which no group's shard count changes
        size
        for size in range(1, max(before.values()) + 1)
        if all(shard_count(before[g], records_per_shard=size) == shard_count(after[g], records_per_shard=size)
               for g in before | after)
    )  # fmt: skip

    old = _rebuild(lines, tmp_path / "old", per_shard)
    assert any(not e.path.endswith("-of-00001.jsonl.zst") for e in old if "/raw/" in e.path)  # several shards
    (tmp_path / "spill").mkdir()
    patched = patch_state(tmp_path / "old", old, changes, carried, tmp_path / "patched",
                          records_per_shard=per_shard, temp_dir=tmp_path / "spill")  # fmt: skip
    assert patched is not None  # shard counts unchanged: the proportional path
    assert patched == _rebuild(kept, tmp_path / "rebuilt", per_shard)
    assert tree_digests(tmp_path / "patched") == tree_digests(tmp_path / "rebuilt")
    assert any(os.path.samefile(tmp_path / "patched" / e.path, tmp_path / "old" / e.path) for e in patched)
    assert not list((tmp_path / "spill").iterdir())  # every spilled piece is removed once used


def test_a_delta_that_changes_shard_counts_reshards_only_those_groups(
    chained: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Removals and new revisions that move a raw group and an index group across a multiple of
    ``recordsPerShard``: those groups are re-sharded (every file new, under the new count), every
    other group is patched (shards nothing lands in stay the old files), and the state is the bytes
    of a rebuild from all records. The old importer fell back to rebuilding everything (None)."""
    state = current_state(chained["full0"])
    assert state is not None
    lines = {key_of_envelope(json.loads(line)): line for _where, line in state_lines(state.path)}
    rng = random.Random(11)
    keys = sorted(k for k in lines if k.startswith(b"advisory\x00"))
    changes: dict[bytes, Change] = {}
    carried: dict[bytes, bytes] = {}
    for key in rng.sample(keys, 6):  # removals
        changes[key] = Change(key, REMOVE, None, line_digest(lines[key]))
    for number, key in enumerate(rng.sample([k for k in keys if k not in changes], 14)):  # new revisions
        line = dumps({**json.loads(lines[key]), "modified": f"20{number:02d}-01-01T00:00:00Z",
                      "digest": f"sha256:{number + 1:064x}"})  # fmt: skip
        new_key = key_of_envelope(json.loads(line))
        changes[new_key] = Change(new_key, ADD, line_digest(line), None)
        carried[new_key] = line
    kept = {k: v for k, v in lines.items() if k not in changes} | carried

    before, after = _group_rows(lines), _group_rows(kept)

    def moved(size: int) -> set[str]:
        return {
            g
            for g in before | after
            if shard_count(before[g], records_per_shard=size) != shard_count(after[g], records_per_shard=size)
        }

    per_shard = next(  # a raw group and an index group move; some group with several shards does not
        size
        for size in range(2, max(before.values()))
        if "advisory" in moved(size)
        and any(g.startswith("index:") for g in moved(size))
        and any(shard_count(before[g], records_per_shard=size) > 1 for g in set(before) - moved(size))
    )

    old = _rebuild(lines, tmp_path / "old", per_shard)
    (tmp_path / "spill").mkdir()
    patched = patch_state(tmp_path / "old", old, changes, carried, tmp_path / "patched",
                          records_per_shard=per_shard, temp_dir=tmp_path / "spill")  # fmt: skip
    assert patched is not None  # re-sharded in place, not the whole-state fallback
    assert patched == _rebuild(kept, tmp_path / "rebuilt", per_shard)
    assert tree_digests(tmp_path / "patched") == tree_digests(tmp_path / "rebuilt")
    folders = {"advisory": "raw/advisories", "sbom": "raw/sboms", "vex": "raw/vex"}

    def folder(group: str) -> str:
        return "data/" + folders.get(group, group.replace("index:", "indexes/")) + "/"

    linked = {
        e.path
        for e in patched
        if (tmp_path / "old" / e.path).exists()
        and os.path.samefile(tmp_path / "patched" / e.path, tmp_path / "old" / e.path)
    }
    for group in moved(per_shard):
        assert not any(p.startswith(folder(group)) for p in linked), group  # every file rewritten
        assert all(
            p.endswith(
                f"-of-{shard_count(after[group], records_per_shard=per_shard):05d}" + p[p.index(".") :]
            )
            for p in (e.path for e in patched)
            if p.startswith(folder(group))
        )
    assert any(not p.startswith(tuple(folder(g) for g in moved(per_shard))) for p in linked)  # others kept
    assert not list((tmp_path / "spill").iterdir())
    # A record index over the lookup's cap is looked up in parts, read again per old shard: the same bytes.
    assert sum(1 for e in patched if e.path.startswith("data/indexes/records/")) > 1  # so several parts
    monkeypatch.setattr(reshard, "_LOOKUP_BYTES", 1)
    parts = patch_state(tmp_path / "old", old, changes, carried, tmp_path / "parts",
                        records_per_shard=per_shard, temp_dir=tmp_path / "spill")  # fmt: skip
    assert parts == patched
    assert tree_digests(tmp_path / "parts") == tree_digests(tmp_path / "rebuilt")
