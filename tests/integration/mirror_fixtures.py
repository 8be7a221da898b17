"""A mirror's life on the connected side (issue 8), shared by the mirror tests.

One ledger grows over three moments; at each one the connected site exports what an
air-gapped site would receive:

* t0: PSF advisories, one CycloneDX SBOM, OpenVEX -> ``full0`` (mirror:full, sequence 1);
* t1: + the GHSA sample, CSAF VEX, another SBOM; one PSF advisory excluded -> ``delta1``;
* t2: + CycloneDX VEX, an SPDX SBOM; more excluded -> ``delta2`` and ``full2`` (sequence 9).

Every bundle is signed (ECDSA key from ``signing_keys``) and archived as ``.tar.zst``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from stella.bundle.trust import build_trust_root
from tests.integration.signed_fixtures import Keys
from tests.support import export, stella_cli, tree_digests

__all__ = ["NOW", "MirrorHistory", "mirror_history", "mirror_import", "mirror_digest"]

T0, T1, T2 = "2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z", "2026-11-29T00:00:00Z"
NOW = "2026-11-30T00:00:00Z"
STEPS = (
    (
        T0,
        ("advisories/osv-psf.jsonl.zst", "sboms/cyclonedx/python311-container.syft.cdx.json", "vex/openvex"),
        (),
    ),
    (
        T1,
        (
            "advisories/osv-ghsa-sample.jsonl.zst",
            "vex/csaf-vex",
            "sboms/cyclonedx/poetry-regression-issue702.cdx.json",
        ),
        ("exclude-id=PSF-2007-1",),
    ),
    (T2, ("vex/cyclonedx-vex", "sboms/spdx/example7-bin.spdx.json"), ("exclude-id=PSF-2007-1,PSF-2019-*",)),
)


@dataclass(frozen=True)
class MirrorHistory:
    ledger: Path
    out: Path
    trust_root: Path
    keys: Keys
    full0: Path
    delta1: Path
    delta2: Path
    full2: Path
    selectors: tuple[str, ...]  # the t2 selection, for the ledger round trip


def _selectors(step: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(arg for s in step for arg in ("--selector", s))


def _archive(bundle: Path) -> Path:
    return bundle.parent / f"{bundle.name}.tar.zst"


@pytest.fixture(scope="session")
def mirror_history(
    tmp_path_factory: pytest.TempPathFactory, shared_data: Path, signing_keys: Keys
) -> MirrorHistory:
    root = tmp_path_factory.mktemp("mirror-history")
    ledger, out = root / "ledger", root / "out"
    trust_root = root / "root.json"
    trust_root.write_bytes(build_trust_root([signing_keys.ec_pub.read_bytes()]))
    sign = ("--sign-key", str(signing_keys.ec_key), "--archive", "--option", "expires=7d")
    bundles: list[Path] = []
    for number, (moment, inputs, selectors) in enumerate(STEPS):
        stella_cli(
            "ledger", "ingest", "--tenant", "acme", "--ledger", str(ledger), "--ingested-at", moment,
            *(str(shared_data / item) for item in inputs), check=True,
        )  # fmt: skip
        # generatedAt (and so the expiry) is the export's moment, as a scheduler passes it.
        extra = (*sign, "--as-of", moment, *_selectors(selectors))
        if number == 0:
            bundles.append(export(ledger, out, *extra, profile="mirror:full"))
        else:
            base = ("--option", f"base={bundles[-1].name}")
            bundles.append(export(ledger, out, *extra, *base, profile="mirror:delta"))
    full2 = export(
        ledger, out, *sign, *_selectors(STEPS[2][2]), "--option", "sequence=9", profile="mirror:full"
    )
    full0, delta1, delta2 = bundles
    return MirrorHistory(
        ledger,
        out,
        trust_root,
        signing_keys,
        _archive(full0),
        _archive(delta1),
        _archive(delta2),
        _archive(full2),
        STEPS[2][2],
    )


def mirror_import(bundle: Path, mirror: Path, trust_root: Path, *extra: str) -> tuple[int, str]:
    """``stella mirror import`` through the console script: (exit code, error code or '')."""
    result = stella_cli(
        "mirror", "import", str(bundle), "--into", str(mirror), "--trust-root", str(trust_root),
        "--now", NOW, "--json", *extra,
    )  # fmt: skip
    code = json.loads(result.stdout)["error"]["code"] if result.returncode else ""
    return result.returncode, code


def mirror_digest(mirror: Path) -> dict[str, str]:
    """Every file of a mirror folder and where ``current`` points: equal digests, same mirror."""
    if not mirror.exists():
        return {}
    state = {"current": str((mirror / "current").readlink()) if (mirror / "current").is_symlink() else ""}
    return {**state, **tree_digests(mirror)}
