"""The mirror contract over random ledger histories (hypothesis):

import(full(t0)) + delta(t0→t1) + delta(t1→t2) leaves the mirror byte-identical to import(full(t2)), and
replayed, old, skipped, rolled-back, expired and base-mismatched bundles are refused with their codes, leaving
the mirror unchanged. Histories mix kinds, new revisions, re-inclusions and removals through exclude selectors,
and a second tenant whose records must never appear. Each example runs five real pipelines: few examples.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from pipelines.export import run_export
from pipelines.registry import get_profile
from stella.bundle.request import new_request
from stella.bundle.trust import trust_key
from stella.errors import StellaError
from stella.ledger.ingest import to_record
from stella.ledger.store import LedgerStore
from stella.mirror.importer import import_bundle, state_lines
from stella.signers.registry import generate_key, load_signer
from tests.integration.mirror_fixtures import mirror_digest
from tests.support import tree_digests

pytestmark = pytest.mark.slow

TIMES = ("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z", "2026-11-03T00:00:00Z")
NOW = datetime(2026, 11, 4, tzinfo=UTC)
IDS = ("PYSEC-1", "PYSEC-2", "PYSEC-3", "GHSA-a", "app-1", "app-2", "vex-1")


def _document(kind: str, name: str, revision: int) -> dict[str, Any]:
    modified = f"2026-10-{revision + 1:02d}T00:00:00Z"
    package = f"pkg{revision % 3}"
    if kind == "advisory":
        return {
            "schema_version": "1.6.0", "id": name, "modified": modified, "aliases": [f"CVE-{name}"],
            "affected": [{"package": {"ecosystem": "PyPI", "name": package, "purl": f"pkg:pypi/{package}"}}],
        }  # fmt: skip
    if kind == "sbom":
        return {
            "bomFormat": "CycloneDX", "specVersion": "1.5", "version": revision + 1,
            "metadata": {"component": {"type": "application", "name": name, "version": str(revision)}},
            "components": [{"type": "library", "name": package, "version": "1.0", "purl": f"pkg:pypi/{package}@1.0"}],
        }  # fmt: skip
    return {
        "@context": "https://openvex.dev/ns/v0.2.0", "@id": f"https://example.test/{name}", "author": "a",
        "timestamp": modified, "version": revision + 1,
        "statements": [{"vulnerability": {"name": "CVE-PYSEC-1"}, "products": [{"@id": f"pkg:pypi/{package}@1.0"}],
                        "status": "not_affected", "justification": "component_not_present"}],
    }  # fmt: skip


_KIND = {"PYSEC": "advisory", "GHSA": "advisory", "app": "sbom", "vex": "vex"}
documents = st.tuples(st.sampled_from(IDS), st.integers(0, 3))
steps = st.tuples(
    st.lists(documents, min_size=1, max_size=5),  # documents received at this moment
    st.sets(st.sampled_from(IDS), max_size=2),  # ids excluded from this moment's selection
    st.lists(documents, max_size=2),  # documents another tenant receives (never exported for acme)
)


def _ingest(store: LedgerStore, tenant: str, received: list[tuple[str, int]], at: str) -> None:
    known = store.known_digests(tenant) if store.segments(tenant) else set()
    records = []
    for name, revision in received:
        raw = json.dumps(_document(_KIND[name.split("-")[0]], name, revision)).encode()
        record = to_record(raw, tenant=tenant, source=f"test/{name}", ingested_at=at)
        if record.digest not in known:
            known.add(record.digest)
            records.append(record)
    if records:
        store.write_segment(tenant, records)


class _Site:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = LedgerStore(str(root / "ledger"))
        generate_key("ed25519", root / "k.key", root / "k.pub", password=None)
        self.signer = load_signer(str(root / "k.key"), environ=os.environ)
        self.trust = trust_key(root / "k.pub")

    def export(self, profile: str, at: str, excluded: set[str], *options: str) -> Path:
        request = new_request(
            tenant="acme", profile=get_profile(profile), ledger_root=self.store.root, out_dir=str(self.root / "out"),
            selectors=[f"exclude-id={','.join(sorted(excluded))}"] if excluded else [],
            options=["expires=10d", *options], as_of=at, records_per_shard=3,
            allow_empty=True,  # histories may select nothing (all excluded, nothing new): still a valid mirror state
        )  # fmt: skip
        return run_export(request, signer=self.signer).path

    def apply(self, bundle: Path, mirror: Path, now: datetime = NOW) -> str:
        try:
            import_bundle(bundle, mirror, trust=self.trust, now=now)
        except StellaError as exc:
            return exc.code
        return ""


def _state(mirror: Path) -> tuple[dict[str, str], Any, Any, Any]:
    value = json.loads((mirror / "current" / "mirror.json").read_bytes())
    return tree_digests(mirror / "current" / "data"), value["contents"], value["recordSet"], value["counts"]


# Three examples of five pipelines each, no shrinking: bounded CI time (a failure prints its example).
@settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    phases=(Phase.explicit, Phase.generate),
)
@given(history=st.lists(steps, min_size=3, max_size=3))
# Empty on purpose: the first full and the first delta select nothing (the only record excluded), then it appears.
@example(
    history=[
        ([("PYSEC-1", 0)], {"PYSEC-1"}, []),
        ([("PYSEC-1", 0)], {"PYSEC-1"}, []),
        ([("PYSEC-1", 1)], set(), []),
    ]
)
def test_full_plus_deltas_equals_the_newer_full(history: list[Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        site = _Site(Path(folder))
        bundles = []
        for number, (received, excluded, other) in enumerate(history):
            _ingest(site.store, "acme", received, TIMES[number])
            _ingest(site.store, "beta", other, TIMES[number])
            if number == 0:
                bundles.append(site.export("mirror:full", TIMES[0], excluded))
                foreign = site.export("mirror:full", TIMES[0], excluded | {"PYSEC-*"}, "sequence=1")
            else:
                bundles.append(site.export("mirror:delta", TIMES[number], excluded, f"base={bundles[-1]}"))
        full2 = site.export("mirror:full", TIMES[2], history[2][1], "sequence=7")
        full0, delta1, delta2 = bundles

        chain, fresh, early = (Path(folder) / name for name in ("chain", "fresh", "early"))
        for bundle in (full0, delta1, delta2):
            assert site.apply(bundle, chain) == ""
        assert site.apply(full2, fresh) == ""
        assert _state(chain) == _state(fresh)
        assert all(json.loads(line)["tenant"] == "acme" for _w, line in state_lines(chain / "current"))
        ids = {json.loads(line)["id"] for _w, line in state_lines(chain / "current")}
        assert not ids & history[2][1]

        assert site.apply(full0, early) == ""
        refusals = [
            (chain, delta2, "ERR_EXPORT_MIRROR_ROLLBACK", NOW),  # replay
            (chain, delta1, "ERR_EXPORT_MIRROR_ROLLBACK", NOW),  # an old delta, out of order
            (chain, full0, "ERR_EXPORT_MIRROR_ROLLBACK", NOW),  # rollback to the first full
            (early, delta2, "ERR_EXPORT_MIRROR_CHAIN", NOW),  # delta1 skipped
            (early, delta1, "ERR_EXPORT_MIRROR_EXPIRED", datetime(2027, 1, 1, tzinfo=UTC)),  # frozen
        ]
        for mirror, bundle, code, now in refusals:
            before = mirror_digest(mirror)
            assert site.apply(bundle, mirror, now) == code, (bundle.name, code)
            assert mirror_digest(mirror) == before
        if foreign.name != full0.name:  # a different state at the same sequence: delta1 is not its delta
            other = Path(folder) / "other"
            assert site.apply(foreign, other) == ""
            before = mirror_digest(other)
            assert site.apply(delta1, other) == "ERR_EXPORT_MIRROR_CHAIN"
            assert mirror_digest(other) == before
        shutil.rmtree(Path(folder) / "out", ignore_errors=True)
