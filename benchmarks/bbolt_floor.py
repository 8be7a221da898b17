"""The floor under the ``trivy:db`` profile: how fast the bbolt writer alone can go.

A Trivy export can never be faster than writing its ``trivy.db``, so this measures
the writer on a synthetic, already sorted stream shaped like the real database:
advisory buckets ``<eco>::GitHub Security Advisory <eco>`` → package → vulnerability
id → ~300-byte Advisory JSON, a ``data-source`` bucket, and a ``vulnerability``
bucket of ~1 KB Vulnerability JSON (a fifth of the entries). The stream is generated
lazily, so peak RSS reflects the writer, not the input.

Run: ``python -m benchmarks.bbolt_floor N [OUT_PATH]``.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from stella.adapters.trivy.bbolt import Entry, write_bolt

__all__ = ["trivy_shaped_entries", "write_floor"]

_ECOSYSTEMS = (
    ("cargo", "Rust"),
    ("composer", "Composer"),
    ("go", "Go"),
    ("maven", "Maven"),
    ("npm", "npm"),
    ("pip", "pip"),
    ("rubygems", "RubyGems"),
)
_ADVISORY_BYTES = 300
_VULNERABILITY_BYTES = 1000


def _template(record: dict[str, object], size: int) -> bytes:
    """``record`` as a JSON ``%``-template, padded through a ``Custom`` field to about ``size`` bytes.

    Templates keep generation far cheaper than writing, so the floor measures the writer.
    """
    raw = json.dumps(record, separators=(",", ":")).encode()
    return raw[:-1] + b',"Custom":"' + b"x" * max(0, size - len(raw) - 12) + b'"}'


_ADVISORY = _template(
    {
        "VulnerableVersions": [">=1.%d.0, <1.%d.%d"],
        "PatchedVersions": ["1.%d.%d"],
        "VendorIDs": ["GHSA-%04x-%04x-%04x"],
    },
    _ADVISORY_BYTES,
)
_VULNERABILITY = _template(
    {
        "Title": "synthetic vulnerability %d",
        "Description": "A synthetic description shaped like an NVD summary. " * 6,
        "Severity": "HIGH",
        "CweIDs": ["CWE-79"],
        "VendorSeverity": {"ghsa": 3, "nvd": 3},
        "CVSS": {"nvd": {"V3Vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "V3Score": 9.8}},
        "References": ["https://example.org/advisories/%d"],
        "PublishedDate": "2021-12-10T10:15:09.143Z",
        "LastModifiedDate": "2022-01-01T00:00:00Z",
    },
    _VULNERABILITY_BYTES,
)


def _advisory(seq: int) -> bytes:
    minor, patch = seq % 40, seq % 9 + 1
    return _ADVISORY % (minor, minor, patch, minor, patch, seq % 65536, seq * 7 % 65536, seq * 13 % 65536)


def _vulnerability(seq: int) -> bytes:
    return _VULNERABILITY % (seq, seq)


# Values are cycled from small pools: their bytes do not matter to the writer, and
# making a fresh one per entry would bill the generator's time to the floor.
_ADVISORIES = tuple(_advisory(seq) for seq in range(97))
_VULNERABILITIES = tuple(_vulnerability(seq) for seq in range(31))


def trivy_shaped_entries(n_entries: int) -> Iterator[Entry]:
    """Exactly ``n_entries`` sorted entries: data-source, advisories, then vulnerability details."""
    buckets = {f"{eco}::GitHub Security Advisory {name}".encode(): eco.encode() for eco, name in _ECOSYSTEMS}
    data_source = min(len(buckets), n_entries)
    vulnerabilities = (n_entries - data_source) // 5
    advisories = n_entries - data_source - vulnerabilities
    per_bucket = {
        name: advisories // len(buckets) + (i < advisories % len(buckets))
        for i, name in enumerate(sorted(buckets))
    }
    sources = {
        name: json.dumps({"ID": "ghsa", "Name": name.decode().split("::", 1)[1]}).encode()
        for name in sorted(buckets)[:data_source]
    }
    top = sorted([*buckets, b"data-source", b"vulnerability"])
    seq = 0
    for name in top:
        if name == b"data-source":
            for source, value in sources.items():
                yield (name,), source, value
        elif name == b"vulnerability":
            for i in range(vulnerabilities):
                yield (name,), b"CVE-2020-%08d" % i, _VULNERABILITIES[i % 31]
        else:
            remaining = per_bucket[name]
            package = 0
            while remaining:
                path = (name, b"%s-package-%07d" % (buckets[name], package))
                for v in range(min(remaining, package * 7 % 6 + 1)):
                    yield path, b"CVE-2020-%08d" % (package * 6 + v), _ADVISORIES[seq % 97]
                    seq += 1
                    remaining -= 1
                package += 1


def write_floor(n_entries: int, out_path: str | os.PathLike[str]) -> dict[str, float | int]:
    """Write ``n_entries`` Trivy-shaped entries to ``out_path``; returns entries, seconds, bytes, peak_rss_mb.

    ``peak_rss_mb`` is this process's peak so far (``ru_maxrss``): call it in a fresh
    process, as ``python -m benchmarks.bbolt_floor`` does, for a number about the writer.
    """
    started = time.perf_counter()
    stats = write_bolt(out_path, trivy_shaped_entries(n_entries))
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "entries": stats.entries,
        "seconds": round(seconds, 6),
        "bytes": Path(out_path).stat().st_size,
        "peak_rss_mb": round(peak_kib / 1024, 1),
    }


def main(argv: list[str]) -> int:
    if not argv or not argv[0].isdigit():
        print("usage: python -m benchmarks.bbolt_floor N_ENTRIES [OUT_PATH]", file=sys.stderr)
        return 2
    n_entries = int(argv[0])
    with tempfile.TemporaryDirectory() as scratch:
        out = argv[1] if len(argv) > 1 else str(Path(scratch) / "trivy.db")
        result = write_floor(n_entries, out)
    rate = result["entries"] / max(result["seconds"], 1e-9)
    mb_rate = result["bytes"] / 1e6 / max(result["seconds"], 1e-9)
    print(json.dumps({**result, "entries_per_s": round(rate), "mb_per_s": round(mb_rate, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
