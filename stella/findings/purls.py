"""Package URLs -> the key both sides of the join use.

A component and an advisory meet only if they produce the same key, so the key comes
from one place: the ecosystem table of the Trivy adapter (``ecosystems.py``).

* Language packages: (Trivy ecosystem prefix, normalized name), plus PEP 503 for PyPI,
  whose registry treats ``.``, ``_`` and ``-`` as one (Trivy folds only ``_``; that
  difference is listed in the Trivy cross-check).
* OS packages (``deb``, ``apk``, ``rpm``): (Trivy OS bucket, package name), the bucket
  naming the distro release ("debian 12", "alpine 3.19"). Like Trivy, the release comes
  from the SBOM's operating-system component when it has one; without one, from the
  purl's namespace and ``distro`` qualifier ("debian-12.5", Trivy's apk "3.19.1"). An OS
  package whose release is unknown gets the empty bucket, which no advisory has, and is
  left out of the join (``matchable``): guessing a release would invent findings.

VEX products are compared by ``identity`` instead: what the purl names, not where it is
looked up, so a statement about ``pkg:deb/debian/openssl`` needs no release.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from urllib.parse import unquote

from packageurl import PackageURL

from stella.adapters.trivy.ecosystems import Ecosystem, OsRelease, ecosystem_of, os_release
from stella.documents.interface import ecosystem_of_purl

__all__ = ["OS_PURL_TYPES", "PackageRef", "match_key", "parse_purl"]

OS_PURL_TYPES = frozenset({"deb", "apk", "rpm"})


@dataclass(frozen=True, slots=True)
class PackageRef:
    """A parsed purl: where it is matched (``key``) and what it says."""

    purl: str
    ecosystem: str  # OSV spelling: "PyPI", "Maven", "Debian", "Rocky Linux"
    key: tuple[str, str]  # join key; bucket "" for an OS package of an unknown release
    identity: tuple[str, str]  # what VEX products compare
    name: str  # as the ecosystem names the package (maven group:artifact, npm @scope/name, ...)
    version: str | None  # for rpm with an ``epoch`` qualifier: "epoch:version-release"
    qualifiers: tuple[tuple[str, str], ...]
    release: OsRelease | None = None  # an OS package's placed release

    @property
    def matchable(self) -> bool:
        return bool(self.key[0])


def match_key(ecosystem: Ecosystem, name: str) -> tuple[str, str]:
    """(Trivy ecosystem prefix, normalized name): equal keys are the same package."""
    normalized = ecosystem.normalize(name)
    if ecosystem.trivy == "pip":
        normalized = re.sub(r"[-_.]+", "-", normalized)
    return ecosystem.trivy, normalized


# Trivy writes "debian-12.5" / "rocky-9.3" (deb, rpm) and "3.19.1" (apk) as ``distro``.
_DISTRO = re.compile(r"(?:(?P<family>[a-z][a-z.]*)-)?(?P<release>\d\S*)")


def _purl_release(namespace: str, qualifiers: dict[str, str]) -> OsRelease | None:
    match = _DISTRO.fullmatch(qualifiers.get("distro", "").lower())
    if match is None:
        return None
    return os_release(match.group("family") or namespace, match.group("release"))


@functools.lru_cache(maxsize=65536)  # SBOMs repeat the same purls; PackageRef is immutable
def parse_purl(purl: str, os: tuple[str, str] | None = None) -> PackageRef | None:
    """None for anything that is not a purl of an ecosystem we match.

    ``os`` is the SBOM's operating system as (Trivy family, version), which places OS
    packages the way Trivy does; a purl's own ``distro`` qualifier is the fallback.
    """
    osv = ecosystem_of_purl(purl) if isinstance(purl, str) else None
    if osv is None:
        return None
    try:
        parsed = PackageURL.from_string(purl)
    except ValueError:
        return None
    namespace = unquote(parsed.namespace) if parsed.namespace else ""
    name = unquote(parsed.name)
    qualifiers = {str(k): str(v) for k, v in (parsed.qualifiers or {}).items()}
    version = unquote(parsed.version) if parsed.version else None
    sorted_qualifiers = tuple(sorted(qualifiers.items()))
    if parsed.type in OS_PURL_TYPES:
        release = os_release(*os) if os is not None else _purl_release(namespace, qualifiers)
        if version is not None and parsed.type == "rpm" and qualifiers.get("epoch", "0") not in ("", "0"):
            version = f"{qualifiers['epoch']}:{version}"  # how rpm (and Trivy) print it
        return PackageRef(
            purl=purl,
            ecosystem=release.ecosystem if release else osv,
            key=(release.bucket if release else "", name),
            identity=(f"{parsed.type}/{namespace}", name),
            name=name,
            version=version,
            qualifiers=sorted_qualifiers,
            release=release,
        )
    eco = ecosystem_of(osv)
    if eco is None:
        return None
    if eco.trivy == "maven":
        if not namespace:
            return None
        full = f"{namespace.replace('/', '.')}:{name}"
    else:
        full = f"{namespace}/{name}" if namespace else name
    key = match_key(eco, full)
    return PackageRef(purl, eco.osv, key, key, full, version, sorted_qualifiers)
