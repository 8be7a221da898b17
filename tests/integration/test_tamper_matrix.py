"""Every tampering of every file kind of every profile's bundle is caught, with the right code and file.

Cases per file kind: flip one byte, truncate, append a file of that kind, delete, swap in
the same-kind file of another (earlier) bundle. Per bundle: replay the earlier export's
signatures, re-sign an altered bundle with an untrusted key. Each case runs on the folder
(trusted via ``--key``) and on the ``.tar.zst`` built from the tampered folder (trusted
via a ``--trust-root`` file), through the real CLI entry point in-process. Exit codes
(docs/errors.md): 3 content, 4 signature, 5 trust.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from stella.bundle.archive import write_tar_zst
from stella.cli import main
from tests.integration import tamper
from tests.integration.signed_fixtures import PROFILE_NAMES, BundlePair, Keys
from tests.support import stella_cli

FORMS = ("dir", "tar.zst")
VARIANTS = (*PROFILE_NAMES, "json:raw+age", "json:raw+aes-gcm")

# (case -> exit code) per control file; every payload kind (plaintext or ciphertext) is 3 throughout.
CONTROL_EXPECTED: dict[str, dict[str, int]] = {
    "export.json": {"flip": 4, "truncate": 4, "append": 3, "delete": 3, "swap": 4},
    "provenance.json": {"flip": 4, "truncate": 4, "append": 3, "delete": 3, "swap": 4},
    "signatures/export.dsse.json": {"flip": 4, "truncate": 4, "append": 3, "delete": 4, "swap": 5},
    "signatures/provenance.dsse.json": {"flip": 4, "truncate": 4, "append": 3, "delete": 4, "swap": 5},
    "signatures/export.sig": {"flip": 4, "truncate": 4, "append": 3, "delete": 4, "swap": 4},
    "signatures/signer.pub": {"flip": 4, "truncate": 4, "append": 3, "delete": 4, "swap": 4},
}
PER_KIND_CASES = ("flip", "truncate", "append", "delete", "swap")


def _bundles(variant: str, signed: dict[str, BundlePair], encrypted: dict[str, BundlePair]) -> BundlePair:
    if variant.startswith("json:raw+"):
        return encrypted[variant.split("+", 1)[1]]
    return signed[variant]


def _trust_args(form: str, public: Path, work: Path) -> list[str]:
    if form == "dir":
        return ["--key", str(public)]
    root = work / "trust-root.json"
    if not root.exists():
        stella_cli("keys", "trust-root", str(public), "--out", str(root), check=True)
    return ["--trust-root", str(root)]


def _verify(capsys: pytest.CaptureFixture[str], target: Path, trust: list[str]) -> tuple[int, str | None]:
    code = main(["export", "verify", str(target), *trust, "--json"])
    out = capsys.readouterr().out
    if code == 0:
        return 0, None
    details = json.loads(out)["error"]["details"]
    return code, details.get("file") or details.get("member")


def _check(
    capsys: pytest.CaptureFixture[str], form: str, folder: Path, trust: list[str], work: Path
) -> tuple[int, str | None]:
    if form == "dir":
        return _verify(capsys, folder, trust)
    archive = work / f"{folder.name}.tar.zst"
    write_tar_zst(folder, archive, mtime=0)
    try:
        return _verify(capsys, archive, trust)
    finally:
        archive.unlink()


def _replace(bundle: Path, path: str, source: Path) -> str:
    (bundle / path).write_bytes(source.read_bytes())
    return path


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_tamper_matrix(
    variant: str,
    form: str,
    signed_bundles: dict[str, BundlePair],
    encrypted_bundles: dict[str, BundlePair],
    signing_keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pair = _bundles(variant, signed_bundles, encrypted_bundles)
    public = signing_keys.ed_pub if "+" in variant else signing_keys.ec_pub
    trust = _trust_args(form, public, tmp_path)
    rows: list[tuple[str, str, str, int, int, str | None]] = []

    def attempt(case: str, kind: str, expected: int, act: Callable[[Path], str | None]) -> None:
        copy = tmp_path / "copy"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(pair.late, copy)
        blamed = act(copy)
        if blamed is None:
            rows.append((case, kind, "-", expected, -1, "identical in both bundles: not a modification"))
            return
        code, named = _check(capsys, form, copy, trust, tmp_path)
        rows.append((case, kind, blamed, expected, code, named))

    code, named = _check(capsys, form, pair.late, trust, tmp_path)
    assert (code, named) == (0, None), f"pristine {variant} bundle fails: {code} {named}"
    kinds = tamper.file_kinds(pair.late)
    assert set(tamper.CONTROL_KINDS) - {"signatures/export.sig"} <= set(kinds)
    for kind, path in sorted(kinds.items()):
        for case in PER_KIND_CASES:
            expected = CONTROL_EXPECTED[kind][case] if kind in CONTROL_EXPECTED else 3
            if case == "swap" and kind == "signatures/signer.pub":
                # Both bundles share a signer; the swapped-in key comes from another signer's bundle.
                attempt(case, kind, expected, lambda b, p=path: _replace(b, p, signing_keys.rogue_pub))
            elif case == "swap":
                attempt(case, kind, expected, lambda b, p=path: tamper.swap(b, p, pair.early))
            else:
                operation = getattr(tamper, case)
                attempt(case, kind, expected, lambda b, p=path, op=operation: op(b, p))
    attempt("replay", "signatures/*", 5, lambda b: tamper.replay_signatures(b, pair.early))
    attempt("re-sign", "signatures/*", 5, lambda b: tamper.resign(b, signing_keys.rogue_key))

    print(f"\n{variant} ({form})")
    for case, kind, blamed, expected, got, named in rows:
        print(f"  {case:<9} {kind:<34} {blamed:<60} -> exit {got} (expected {expected}) names {named}")
    failures = [row for row in rows if row[4] != -1 and (row[4] != row[3] or row[5] != row[2])]
    assert not failures, "\n".join(
        f"{case} {kind} ({blamed}): expected exit {expected} naming {blamed}, got {got} naming {named}"
        for case, kind, blamed, expected, got, named in failures
    )
    skipped = [row for row in rows if row[4] == -1]
    assert all(row[0] == "swap" for row in skipped)


def test_resigned_bundle_is_consistent_and_fails_only_on_trust(
    signed_bundles: dict[str, BundlePair],
    signing_keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The forged bundle is internally consistent: only the choice of trusted key rejects it."""
    copy = tmp_path / "forged"
    shutil.copytree(signed_bundles["json:raw"].late, copy)
    tamper.resign(copy, signing_keys.rogue_key)
    assert _verify(capsys, copy, ["--key", str(signing_keys.ec_pub)]) == (5, "signatures/export.dsse.json")
    assert _verify(capsys, copy, ["--key", str(signing_keys.rogue_pub)]) == (0, None)
    # Integrity-only verification cannot tell, and says so.
    assert main(["export", "verify", str(copy)]) == 0
    assert "NOT checked against a trusted key" in capsys.readouterr().out


@pytest.mark.parametrize("damage", ["flip", "truncate", "append-garbage"])
def test_damaged_archive_is_refused_naming_the_member(
    damage: str, signed_bundles: dict[str, BundlePair], signing_keys: Keys, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    late = signed_bundles["json:raw"].late
    archive = tmp_path / "bundle.tar.zst"
    shutil.copyfile(late.parent / f"{late.name}.tar.zst", archive)
    data = bytearray(archive.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    elif damage == "truncate":
        del data[len(data) // 2 :]
    else:
        data += b"\x00garbage\xff" * 64
    archive.write_bytes(bytes(data))
    code, named = _verify(capsys, archive, ["--key", str(signing_keys.ec_pub)])
    assert code == 3
    assert named, "the error must name the member (or the archive end) where it broke"
