"""Where an OSV package lands in a Trivy DB: bucket, data source, package key, version scheme.

Trivy finds language advisories by walking every top-level bucket named
``<ecosystem>::…`` and opening the sub-bucket named after the *normalized* package name
(research/trivy-formats.md B.5, B.7, E.2); OS advisories live in one bucket per release,
spelled the way Trivy spells the detected OS (B.6). A key that is spelled differently
from Trivy's lookup is never found, and nothing warns, so the spellings are kept here in
one table rather than scattered through the adapter.

Data sources: Trivy shows ``data-source[<bucket>]`` as the finding's DataSource and uses
its ``ID`` to pick the vendor severity (E.4). The feed is recognised from the OSV id prefix
(``GHSA-``, ``PYSEC-``, ``GO-``, ``RUSTSEC-``, ``BIT-``) and named as the upstream Trivy
DB names it, so findings read the same as with the public DB; any other feed gets one
generic OSV source per ecosystem.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

from stella.adapters.trivy.versions import Scheme

__all__ = [
    "DataSource",
    "Ecosystem",
    "Placement",
    "Unplaceable",
    "OsRelease",
    "ecosystem_of",
    "known_ecosystems",
    "language_ecosystems",
    "normalize_name",
    "os_release",
    "place",
]


@dataclass(frozen=True, slots=True)
class DataSource:
    """The ``data-source`` bucket value (B.2)."""

    id: str
    name: str
    url: str

    def to_json(self) -> dict[str, str]:
        return {"ID": self.id, "Name": self.name, "URL": self.url}


def _lower(name: str) -> str:
    return name.lower()


def _pip(name: str) -> str:
    # Trivy folds case and "_" only; "." stays (B.7), so this is deliberately not PEP 503.
    return name.lower().replace("_", "-")


def _keep(name: str) -> str:
    return name


def _swift(name: str) -> str:
    name = name.removeprefix("https://")
    return name.removesuffix(".git")


@dataclass(frozen=True, slots=True)
class Ecosystem:
    """A language ecosystem Trivy matches and OSV provides."""

    osv: str  # OSV spelling, compared case-insensitively as Trivy does
    trivy: str  # bucket prefix before "::"
    ghsa: str  # GitHub's ecosystem label, used in GHSA data-source names
    scheme: Scheme
    normalize: Callable[[str], str]


_LANGUAGES: tuple[Ecosystem, ...] = (
    Ecosystem("PyPI", "pip", "pip", Scheme.PEP440, _pip),
    Ecosystem("npm", "npm", "npm", Scheme.NPM, _lower),
    Ecosystem("Maven", "maven", "Maven", Scheme.MAVEN, _lower),
    Ecosystem("Go", "go", "Go", Scheme.GENERIC, _keep),
    Ecosystem("crates.io", "cargo", "Rust", Scheme.GENERIC, _lower),
    Ecosystem("RubyGems", "rubygems", "RubyGems", Scheme.RUBYGEMS, _lower),
    Ecosystem("NuGet", "nuget", "NuGet", Scheme.GENERIC, _lower),
    Ecosystem("Packagist", "composer", "Composer", Scheme.GENERIC, _lower),
    Ecosystem("Pub", "pub", "Pub", Scheme.GENERIC, _lower),
    Ecosystem("Hex", "erlang", "Erlang", Scheme.GENERIC, _lower),
    Ecosystem("SwiftURL", "swift", "Swift", Scheme.GENERIC, _swift),
    Ecosystem("purl-type:swift", "swift", "Swift", Scheme.GENERIC, _swift),
    Ecosystem("ConanCenter", "conan", "Conan", Scheme.GENERIC, _lower),
    Ecosystem("Julia", "julia", "Julia", Scheme.GENERIC, _keep),
    Ecosystem("Kubernetes", "k8s", "Kubernetes", Scheme.GENERIC, _lower),
    Ecosystem("Bitnami", "bitnami", "Bitnami", Scheme.GENERIC, _lower),
)
_BY_OSV = {eco.osv.lower(): eco for eco in _LANGUAGES}


def language_ecosystems() -> tuple[Ecosystem, ...]:
    return _LANGUAGES


def ecosystem_of(osv_ecosystem: str) -> Ecosystem | None:
    """The language ecosystem for an OSV ecosystem name (case-insensitive), if Trivy has it."""
    return _BY_OSV.get(osv_ecosystem.lower())


def normalize_name(osv_ecosystem: str, name: str) -> str | None:
    """The package key Trivy looks up for a language package, or None if unsupported."""
    eco = _BY_OSV.get(osv_ecosystem.lower())
    return None if eco is None else eco.normalize(name)


# --- data sources ------------------------------------------------------------------------

_GHSA_URL = "https://github.com/advisories?query=type%3Areviewed+ecosystem%3A{}"
# Feeds recognised by id prefix: (prefix, ecosystems it covers or None for all, source).
_FEEDS: tuple[tuple[str, frozenset[str] | None, DataSource], ...] = (
    (
        "PYSEC-",
        frozenset({"pip"}),
        DataSource("osv", "Python Packaging Advisory Database", "https://github.com/pypa/advisory-database"),
    ),
    (
        "GO-",
        frozenset({"go"}),
        DataSource("govulndb", "The Go Vulnerability Database", "https://pkg.go.dev/vuln/"),
    ),
    (
        "RUSTSEC-",
        frozenset({"cargo"}),
        DataSource("osv", "RustSec Advisory Database", "https://github.com/RustSec/advisory-db"),
    ),
    (
        "BIT-",
        frozenset({"bitnami"}),
        DataSource("bitnami", "Bitnami Vulnerability Database", "https://github.com/bitnami/vulndb"),
    ),
)
_GENERIC_SOURCE = DataSource("osv", "Open Source Vulnerabilities", "https://osv.dev")


def _language_source(eco: Ecosystem, record_id: str) -> DataSource:
    if record_id.startswith("GHSA-") and eco.trivy not in ("bitnami", "julia", "k8s", "conan"):
        return DataSource("ghsa", f"GitHub Security Advisory {eco.ghsa}", _GHSA_URL.format(eco.ghsa.lower()))
    for prefix, covers, source in _FEEDS:
        if record_id.startswith(prefix) and (covers is None or eco.trivy in covers):
            return source
    return _GENERIC_SOURCE


# --- OS releases -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Distro:
    osv: str  # OSV ecosystem name before ":"
    bucket: Callable[[str], str | None]  # release → bucket name, None when unusable
    source: DataSource
    scheme: Scheme
    families: tuple[str, ...]  # Trivy's OS family names, which are also the purl namespaces
    needs_release: bool = True
    # Trivy's Debian, Ubuntu and Alpine detectors report an advisory with no FixedVersion
    # (every version affected); its Red Hat-family and Wolfi/Chainguard detectors compare
    # FixedVersion only, so an unfixed entry there would be written and never matched.
    reports_unfixed: bool = False
    # Which detectors look advisories up by the source package's name, and compare the
    # source package's version (Debian, Ubuntu, Alpine: both; Wolfi, Chainguard: name only).
    source_name: bool = False
    source_version: bool = False


def _debian(release: str) -> str | None:
    match = re.fullmatch(r"(\d+)(?:\.\d+)*", release)
    return None if match is None else f"debian {match.group(1)}"


def _alpine(release: str) -> str | None:
    match = re.fullmatch(r"v?(\d+\.\d+)(?:\.\d+)*", release)
    return None if match is None else f"alpine {match.group(1)}"


def _ubuntu(release: str) -> str | None:
    # "22.04", "22.04:LTS", "Pro:18.04:LTS" (Ubuntu Pro = Trivy's "-ESM" buckets, inferred).
    parts = release.split(":")
    esm = parts[0] == "Pro"
    if esm:
        parts = parts[1:]
    if not parts or re.fullmatch(r"\d+\.\d+", parts[0]) is None or any(p != "LTS" for p in parts[1:]):
        return None
    return f"ubuntu {parts[0]}" + ("-ESM" if esm else "")


def _major(prefix: str) -> Callable[[str], str | None]:
    def bucket(release: str) -> str | None:
        match = re.fullmatch(r"(\d+)(?:\.\d+)*", release)
        return None if match is None else f"{prefix} {match.group(1)}"

    return bucket


def _fixed(name: str) -> Callable[[str], str | None]:
    return lambda _release: name


_DISTROS: tuple[_Distro, ...] = (
    _Distro(
        "Debian",
        _debian,
        DataSource(
            "debian",
            "Debian Security Tracker",
            "https://salsa.debian.org/security-tracker-team/security-tracker",
        ),
        Scheme.DPKG,
        ("debian",),
        reports_unfixed=True,
        source_name=True,
        source_version=True,
    ),
    _Distro(
        "Alpine",
        _alpine,
        DataSource("alpine", "Alpine Secdb", "https://secdb.alpinelinux.org/"),
        Scheme.APK,
        ("alpine",),
        reports_unfixed=True,
        source_name=True,
        source_version=True,
    ),
    _Distro(
        "Ubuntu",
        _ubuntu,
        DataSource("ubuntu", "Ubuntu CVE Tracker", "https://git.launchpad.net/ubuntu-cve-tracker"),
        Scheme.DPKG,
        ("ubuntu",),
        reports_unfixed=True,
        source_name=True,
        source_version=True,
    ),
    _Distro(
        "Rocky Linux",
        _major("rocky"),
        DataSource("rocky", "Rocky Linux updateinfo", "https://download.rockylinux.org/pub/rocky/"),
        Scheme.RPM,
        ("rocky",),
    ),
    _Distro(
        "AlmaLinux",
        _major("alma"),
        DataSource("alma", "AlmaLinux Product Errata", "https://errata.almalinux.org/"),
        Scheme.RPM,
        ("alma", "almalinux"),
    ),
    _Distro(
        "Wolfi",
        _fixed("wolfi"),
        DataSource("wolfi", "Wolfi Secdb", "https://packages.wolfi.dev/os/security.json"),
        Scheme.APK,
        ("wolfi",),
        False,
        source_name=True,
    ),
    _Distro(
        "Chainguard",
        _fixed("chainguard"),
        DataSource("chainguard", "Chainguard Secdb", "https://packages.cgr.dev/chainguard/security.json"),
        Scheme.APK,
        ("chainguard",),
        False,
        source_name=True,
    ),
)
_DISTRO_BY_OSV = {d.osv.lower(): d for d in _DISTROS}
_DISTRO_BY_FAMILY = {family: d for d in _DISTROS for family in d.families}


@dataclass(frozen=True, slots=True)
class OsRelease:
    """An installed OS as Trivy's detector for it sees it: bucket and version scheme."""

    ecosystem: str  # OSV ecosystem name without the release ("Debian", "Rocky Linux")
    bucket: str
    scheme: Scheme
    source_name: bool  # advisories are looked up by the source package's name
    source_version: bool  # ... and compared with the source package's version


def os_release(family: str, release: str) -> OsRelease | None:
    """The bucket an OS package of ``family`` ``release`` is looked up in, as Trivy 0.76 does.

    ``family`` is Trivy's OS family name (a CycloneDX operating-system component's name,
    or a purl namespace); ``release`` the OS version ("12.5", "3.19.1", "22.04"), cut to
    the bucket's precision by the same functions that place OSV records, so a component
    and an advisory of one release always meet. None for an OS no bucket serves.
    """
    distro = _DISTRO_BY_FAMILY.get(family.lower())
    if distro is None or (distro.needs_release and not release):
        return None
    bucket = distro.bucket(release)
    if bucket is None:
        return None
    return OsRelease(distro.osv, bucket, distro.scheme, distro.source_name, distro.source_version)


# --- placement -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one OSV ``affected[].package`` goes."""

    bucket: str
    package: str  # key of the package sub-bucket
    source: DataSource
    scheme: Scheme
    is_os: bool
    reports_unfixed: bool = True  # see _Distro.reports_unfixed; language buckets always do


@dataclass(frozen=True, slots=True)
class Unplaceable:
    reason: str  # "unsupported-ecosystem" | "os-release-missing" | "malformed"
    detail: str


def place(osv_ecosystem: str, name: str, *, record_id: str) -> Placement | Unplaceable:
    """Bucket and package key for an OSV package, as Trivy 0.76 looks them up."""
    # The id matters only through which feed prefix it starts with (every prefix in
    # _FEEDS and "GHSA-" ends at its first dash), so the answer is memoized per
    # (ecosystem, package, "<prefix>-"): advisories name the same packages again and again.
    head, dash, _rest = record_id.partition("-")
    return _place(osv_ecosystem, name, head + dash)


@functools.lru_cache(maxsize=65536)
def _place(osv_ecosystem: str, name: str, record_id: str) -> Placement | Unplaceable:
    if not name:
        return Unplaceable("malformed", f"empty package name in ecosystem {osv_ecosystem!r}")
    eco = _BY_OSV.get(osv_ecosystem.lower())
    if eco is not None:
        source = _language_source(eco, record_id)
        return Placement(f"{eco.trivy}::{source.name}", eco.normalize(name), source, eco.scheme, False)
    base, sep, release = osv_ecosystem.partition(":")
    distro = _DISTRO_BY_OSV.get(base.lower())
    if distro is None:
        return Unplaceable("unsupported-ecosystem", f"ecosystem {osv_ecosystem!r} (package {name!r})")
    if distro.needs_release and not (sep and release):
        return Unplaceable(
            "os-release-missing", f"ecosystem {osv_ecosystem!r} names no release (package {name!r})"
        )
    bucket = distro.bucket(release)
    if bucket is None:
        return Unplaceable(
            "unsupported-ecosystem",
            f"ecosystem {osv_ecosystem!r}: no Trivy bucket for that release (package {name!r})",
        )
    return Placement(bucket, name, distro.source, distro.scheme, True, distro.reports_unfixed)


# OSV ecosystems that no Trivy bucket takes but that advisories and selectors name.
_OTHER_OSV = ("OSS-Fuzz", "GIT", "Linux", "Android", "GitHub Actions", "Hackage", "CRAN", "Bioconductor",
              "Red Hat", "SUSE", "openSUSE", "Photon OS", "Mageia", "Debian", "Ubuntu", "Alpine")  # fmt: skip


def known_ecosystems() -> tuple[str, ...]:
    """Every ecosystem name (before any ``:release``) a selector can usefully name, sorted."""
    names = {eco.osv for eco in _LANGUAGES} | {d.osv for d in _DISTROS} | set(_OTHER_OSV)
    return tuple(sorted(names, key=str.lower))
