"""Package URLs -> the (ecosystem, name) key both sides of the join use.

A component and an advisory meet only if they produce the same key, so the key comes
from one place: the ecosystem table of the Trivy adapter (``ecosystems.py``: which OSV
ecosystem a purl type is, how its registry spells names), plus PEP 503 for PyPI, whose
registry treats ``.``, ``_`` and ``-`` as one (Trivy folds only ``_``; that difference is
listed in the Trivy cross-check).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from urllib.parse import unquote

from packageurl import PackageURL

from stella.adapters.trivy.ecosystems import Ecosystem, ecosystem_of
from stella.documents.interface import ecosystem_of_purl

__all__ = ["PackageRef", "match_key", "parse_purl"]


@dataclass(frozen=True, slots=True)
class PackageRef:
    """A parsed purl: where it is matched (``key``) and what it says."""

    purl: str
    ecosystem: Ecosystem
    name: str  # as the ecosystem names the package (maven group:artifact, npm @scope/name, ...)
    version: str | None
    qualifiers: tuple[tuple[str, str], ...]

    @property
    def key(self) -> tuple[str, str]:
        return match_key(self.ecosystem, self.name)


def match_key(ecosystem: Ecosystem, name: str) -> tuple[str, str]:
    """(Trivy ecosystem prefix, normalized name): equal keys are the same package."""
    normalized = ecosystem.normalize(name)
    if ecosystem.trivy == "pip":
        normalized = re.sub(r"[-_.]+", "-", normalized)
    return ecosystem.trivy, normalized


@functools.lru_cache(maxsize=65536)  # SBOMs repeat the same purls; PackageRef is immutable
def parse_purl(purl: str) -> PackageRef | None:
    """None for anything that is not a purl of a language ecosystem we match."""
    osv = ecosystem_of_purl(purl) if isinstance(purl, str) else None
    eco = ecosystem_of(osv) if osv else None
    if eco is None:
        return None
    try:
        parsed = PackageURL.from_string(purl)
    except ValueError:
        return None
    namespace = unquote(parsed.namespace) if parsed.namespace else ""
    name = unquote(parsed.name)
    if eco.trivy == "maven":
        if not namespace:
            return None
        full = f"{namespace.replace('/', '.')}:{name}"
    else:
        full = f"{namespace}/{name}" if namespace else name
    qualifiers = parsed.qualifiers if isinstance(parsed.qualifiers, dict) else {}
    return PackageRef(
        purl=purl,
        ecosystem=eco,
        name=full,
        version=unquote(parsed.version) if parsed.version else None,
        qualifiers=tuple(sorted((str(k), str(v)) for k, v in qualifiers.items())),
    )
