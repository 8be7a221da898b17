"""Synthetic vulnerability evidence: OSV advisories, SBOMs and VEX shaped like the real feeds.

Why synthetic: the public data set holds ~10k advisories, two orders of magnitude short
of the ledgers the exporter must handle, and the held-out set must stay unseen.
``stella ledger generate`` and the benchmarks need millions of documents that exercise
the code paths real ones do -- every range kind, multi-span events, withdrawn and
GIT-only records, purls that SBOM components and VEX products share with advisories --
with sizes and proportions measured on ``../shared/data`` (the tests compare them).

Why determinism is built in rather than hoped for: a demo ledger or a benchmark input
must be the same bytes on every run and machine, and producible as parallel shards.
Document ``i`` depends only on (seed, mix, advisories_only, i): each block of
:data:`BLOCK` documents draws from its own ``random.Random`` seeded with a string
(SHA-512 seeding, stable across platforms and Python versions). No clock is read; dates
are drawn from 2005..mid-2026. Every document carries ``i`` in its identity (OSV
``id``, CycloneDX ``serialNumber``, SPDX ``documentNamespace``, OpenVEX ``@id``, CSAF
``tracking.id``), so identities never collide within a sequence.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from stella.errors import UsageError
from stella.ledger.synthetic._osv import osv
from stella.ledger.synthetic._sbom import cyclonedx, spdx
from stella.ledger.synthetic._text import Draw
from stella.ledger.synthetic._vex import csaf, cyclonedx_vex, openvex

__all__ = ["BLOCK", "FORMATS", "SyntheticMix", "synthetic_documents", "synthetic_slice"]

#: Documents per random stream. A slice that starts inside a block re-draws the block's
#: earlier documents, so keep parallel slice boundaries at multiples of this.
BLOCK = 64

_GENERATORS: dict[str, Callable[[Draw, int], str]] = {
    "osv": osv,
    "cyclonedx": cyclonedx,
    "spdx": spdx,
    "openvex": openvex,
    "cyclonedx-vex": cyclonedx_vex,
    "csaf": csaf,
}
#: Every format a synthetic document can have (the ``stella.model.DocFormat`` values).
FORMATS = tuple(_GENERATORS)


@dataclass(frozen=True)
class SyntheticMix:
    """Fractions of each kind of document (normalised, so they need not sum to exactly 1).

    The default mirrors what a StellaOps ledger holds by count: advisory feeds (OSV,
    GHSA, distro trackers) are hundreds of thousands of records; VEX comes per vendor
    per CVE (Red Hat publishes one CSAF VEX per CVE), a few per cent; SBOMs are one per
    built artifact, fewer still but each a hundred times larger, so 2 % of the documents
    is already about two thirds of the bytes (lower ``sboms`` for byte-lean benchmarks,
    raise it to stress SBOM-heavy profiles such as the Trivy Java DB). ``spdx_share`` is the part of SBOMs written as
    SPDX 2.3 (the rest CycloneDX); ``openvex_share`` and ``csaf_share`` split VEX, the
    rest being CycloneDX VEX.
    """

    advisories: float = 0.94
    sboms: float = 0.02
    vex: float = 0.04
    spdx_share: float = 0.2
    openvex_share: float = 0.4
    csaf_share: float = 0.4

    def __post_init__(self) -> None:
        for name in ("advisories", "sboms", "vex", "spdx_share", "openvex_share", "csaf_share"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
                raise UsageError(
                    f"synthetic mix: {name} must be a finite number >= 0", details={name: repr(value)}
                )
        if self.advisories + self.sboms + self.vex <= 0:
            raise UsageError("synthetic mix: advisories, sboms and vex cannot all be 0")
        if self.spdx_share > 1 or self.openvex_share + self.csaf_share > 1:
            raise UsageError("synthetic mix: spdx_share, and openvex_share + csaf_share, must be at most 1")

    def shares(self) -> dict[str, float]:
        """Probability of each format."""
        total = self.advisories + self.sboms + self.vex
        sbom, vex = self.sboms / total, self.vex / total
        return {
            "osv": self.advisories / total,
            "cyclonedx": sbom * (1 - self.spdx_share),
            "spdx": sbom * self.spdx_share,
            "openvex": vex * self.openvex_share,
            "cyclonedx-vex": vex * (1 - self.openvex_share - self.csaf_share),
            "csaf": vex * self.csaf_share,
        }


_DEFAULT_MIX = SyntheticMix()


def synthetic_slice(
    start: int,
    stop: int,
    *,
    seed: int = 0,
    mix: SyntheticMix = _DEFAULT_MIX,
    advisories_only: bool = False,
) -> Iterator[tuple[str, bytes]]:
    """Documents ``start .. stop-1`` of the sequence for (``seed``, ``mix``, ``advisories_only``).

    Yields ``(format, RFC 8785 bytes)``, ``format`` one of :data:`FORMATS`. Slices
    concatenate to exactly :func:`synthetic_documents`, so shards can be generated in
    parallel.

    Raises:
        UsageError: a negative or reversed range, or a seed that is not an integer.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UsageError("synthetic documents: the seed must be an integer", details={"seed": repr(seed)})
    if isinstance(start, bool) or isinstance(stop, bool) or not 0 <= start <= stop:
        raise UsageError(
            "synthetic documents: need 0 <= start <= stop", details={"start": start, "stop": stop}
        )
    if not isinstance(mix, SyntheticMix):
        raise UsageError("synthetic documents: mix must be a SyntheticMix", details={"mix": repr(mix)})
    return _generate(start, stop, seed, mix, advisories_only)


def synthetic_documents(
    count: int,
    *,
    seed: int = 0,
    mix: SyntheticMix = _DEFAULT_MIX,
    advisories_only: bool = False,
) -> Iterator[tuple[str, bytes]]:
    """The first ``count`` documents: ``synthetic_slice(0, count, ...)``."""
    return synthetic_slice(0, count, seed=seed, mix=mix, advisories_only=advisories_only)


def _generate(
    start: int, stop: int, seed: int, mix: SyntheticMix, advisories_only: bool
) -> Iterator[tuple[str, bytes]]:
    shares = {"osv": 1.0} if advisories_only else {k: v for k, v in mix.shares().items() if v > 0}
    formats = list(shares)
    generators = [_GENERATORS[f] for f in formats]
    bounds: list[float] = []
    total = 0.0
    for share in shares.values():
        total += share
        bounds.append(total)
    last = len(formats) - 1
    block = start // BLOCK
    while block * BLOCK < stop:
        u = random.Random(f"stella-synthetic:{seed}:{block}").random
        for i in range(block * BLOCK, min(block * BLOCK + BLOCK, stop)):
            k = min(bisect.bisect_right(bounds, u() * total), last)
            text = generators[k](u, i)
            if i >= start:
                yield formats[k], text.encode()
        block += 1
