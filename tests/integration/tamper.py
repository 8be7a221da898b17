"""Tampering helpers: what an attacker (or a bad disk, or a careless copy) does to a bundle.

Each operation works on a private copy of a bundle folder and returns the path the
verifier must blame. Nothing here calls the project's verifier; the re-sign attack uses
the project's *signing* code, as an attacker holding this tool and their own key would.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

from backports import zstd

from stella.bundle.sign import sign_bundle
from stella.canonical import dumps
from stella.signers.registry import load_signer

__all__ = [
    "CONTROL_KINDS",
    "append",
    "delete",
    "file_kinds",
    "flip",
    "replay_signatures",
    "resign",
    "swap",
    "truncate",
]

CONTROL_KINDS = (
    "export.json",
    "provenance.json",
    "signatures/export.dsse.json",
    "signatures/provenance.dsse.json",
    "signatures/export.sig",
    "signatures/signer.pub",
)
_BLOB = re.compile(r"[0-9a-f]{64}")


def _files(bundle: Path) -> list[str]:
    return sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file())


def kind_of(path: str) -> str:
    """Control files are their own kind; payload files are grouped by extension."""
    if path in CONTROL_KINDS:
        return path
    name = path.rsplit("/", 1)[-1]
    if _BLOB.fullmatch(name):
        return "payload <sha256 blob>"
    return "payload " + ("." + name.split(".", 1)[1] if "." in name else name)


def file_kinds(bundle: Path) -> dict[str, str]:
    """kind -> the first file of that kind (sorted by path)."""
    kinds: dict[str, str] = {}
    for path in _files(bundle):
        kinds.setdefault(kind_of(path), path)
    return kinds


def flip(bundle: Path, path: str) -> str:
    data = bytearray((bundle / path).read_bytes())
    data[len(data) // 2] ^= 0x01
    (bundle / path).write_bytes(bytes(data))
    return path


def truncate(bundle: Path, path: str) -> str:
    data = (bundle / path).read_bytes()
    (bundle / path).write_bytes(data[: len(data) // 2])
    return path


def append(bundle: Path, path: str) -> str:
    """A new file of the same kind next to ``path`` (a copy of it under another name)."""
    parent, _, name = path.rpartition("/")
    added = f"{parent}/extra-{name}" if parent else f"extra-{name}"
    shutil.copyfile(bundle / path, bundle / added)
    return added


def delete(bundle: Path, path: str) -> str:
    (bundle / path).unlink()
    return path


def swap(bundle: Path, path: str, other: Path) -> str | None:
    """Put a same-kind file of ``other`` in place of ``path``; None if every candidate is identical."""
    mine = (bundle / path).read_bytes()
    candidates = [path] + [p for p in _files(other) if kind_of(p) == kind_of(path) and p != path]
    for candidate in candidates:
        source = other / candidate
        if source.is_file() and source.read_bytes() != mine:
            (bundle / path).write_bytes(source.read_bytes())
            return path
    return None


def replay_signatures(bundle: Path, earlier: Path) -> str:
    """Replace every signature file by the ones of an earlier, validly signed export."""
    shutil.rmtree(bundle / "signatures")
    shutil.copytree(earlier / "signatures", bundle / "signatures")
    return "signatures/export.dsse.json"


def resign(bundle: Path, key: Path) -> str:
    """Alter a payload file, make the manifest and provenance agree, and sign with ``key``."""
    manifest = json.loads((bundle / "export.json").read_bytes())
    entry = manifest["contents"][0]
    target = bundle / entry["path"]
    if not target.exists():  # encrypted: alter the plaintext claim only
        entry["digest"] = "sha256:" + "0" * 64
    else:
        # Another (empty) zstd frame: still a valid stream, with different bytes.
        data = target.read_bytes() + zstd.compress(b"")
        target.write_bytes(data)
        entry["digest"], entry["bytes"] = "sha256:" + hashlib.sha256(data).hexdigest(), len(data)
    (bundle / "export.json").write_bytes(dumps(manifest))
    statement = json.loads((bundle / "provenance.json").read_bytes())
    digests = {"export.json": hashlib.sha256((bundle / "export.json").read_bytes()).hexdigest()}
    digests[entry["path"]] = entry["digest"].split(":", 1)[1]
    for subject in statement["subject"]:
        if subject["name"] in digests:
            subject["digest"]["sha256"] = digests[subject["name"]]
    (bundle / "provenance.json").write_bytes(dumps(statement))
    shutil.rmtree(bundle / "signatures")
    sign_bundle(bundle, load_signer(str(key), environ={}))
    return "signatures/export.dsse.json"
