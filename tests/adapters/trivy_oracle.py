"""An independent oracle: which SBOM components OSV records say are vulnerable.

Written from the OSV schema's evaluation rules (https://ossf.github.io/osv-schema/,
"Evaluation": a version is affected when it is listed in ``versions`` or lies in any
``SEMVER``/``ECOSYSTEM`` range, whose events are sorted by version and swept, with
``introduced: "0"`` below everything and ``limit`` capping the range) and ordinary
version libraries -- ``packaging`` (PEP 440), ``semver`` (SemVer 2.0: npm, Go,
crates.io), ``univers`` (Maven, NuGet, RubyGems) and, for Composer, a small
reading of Composer's own ordering rules (``univers`` mis-orders four-part versions). It never imports the
adapter, so the end-to-end test compares two independent readings of the same data.

One convention is shared with Trivy on purpose, because it is about naming rather than
matching: a finding is reported under the record's CVE aliases when it has any, else
under the record's own id (Trivy's OSV importer keys advisories that way).

Where Trivy's own semantics differ from OSV's, the difference is listed in
:data:`DIVERGENCES` with its reason; the comparison accepts exactly those differences.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import semver
from packaging.version import InvalidVersion
from packaging.version import Version as Pep440Version
from univers.versions import MavenVersion, NugetVersion, RubygemsVersion

__all__ = [
    "DIVERGENCES",
    "PURL_ECOSYSTEMS",
    "Component",
    "Divergence",
    "Finding",
    "expected_findings",
    "explain",
    "is_affected",
    "parse_version",
]

Finding = tuple[str, str, str]
"""(component name as Trivy prints it, installed version, vulnerability id)."""


@dataclass(frozen=True, slots=True)
class Component:
    name: str  # as Trivy reports PkgName: maven "group:artifact", else "group/name" or "name"
    version: str
    purl_type: str


# purl type → OSV ecosystem of the advisories that apply to it.
PURL_ECOSYSTEMS: Mapping[str, str] = {
    "pypi": "PyPI",
    "npm": "npm",
    "maven": "Maven",
    "golang": "Go",
    "composer": "Packagist",
    "cargo": "crates.io",
    "gem": "RubyGems",
    "nuget": "NuGet",
}


def _pep503(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# How each ecosystem compares package names (its registry's identity rules).
_NAME_KEY: Mapping[str, Callable[[str], str]] = {
    "PyPI": _pep503,
    "npm": lambda n: n,
    "Maven": lambda n: n,
    "Go": lambda n: n,
    "Packagist": str.lower,
    "crates.io": lambda n: n.replace("_", "-"),
    "RubyGems": lambda n: n,
    "NuGet": str.lower,
}


class _Min:
    """Below every version: OSV's ``introduced: "0"``."""

    def __lt__(self, other: object) -> bool:
        return not isinstance(other, _Min)

    def __le__(self, other: object) -> bool:
        return True

    def __gt__(self, other: object) -> bool:
        return False

    def __ge__(self, other: object) -> bool:
        return isinstance(other, _Min)


_MIN = _Min()


# Composer's ordering (composer/semver VersionParser + PHP version_compare): up to four
# numeric segments, then a stability suffix dev < alpha < beta < RC < stable < patch.
# univers' ComposerVersion coerces to three-part SemVer and mis-orders "1.3.0.1".
_COMPOSER = re.compile(
    r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:\.(\d+))?(?:[-.]?(dev|alpha|a|beta|b|rc|patch|pl|p)[.-]?(\d+)?)?$",
    re.IGNORECASE,
)
_STABILITY = {"dev": 0, "alpha": 1, "a": 1, "beta": 2, "b": 2, "rc": 3, "": 4, "patch": 5, "pl": 5, "p": 5}


def _composer(raw: str) -> tuple[int, ...]:
    match = _COMPOSER.match(raw)
    if match is None:
        raise ValueError(f"not a Composer version: {raw!r}")
    *segments, stability, number = match.groups()
    return (*(int(s or 0) for s in segments), _STABILITY[(stability or "").lower()], int(number or 0))


def _semver(raw: str) -> Any:
    return semver.Version.parse(raw[1:] if raw.startswith("v") else raw)


_PARSERS: Mapping[str, Callable[[str], Any]] = {
    "PyPI": Pep440Version,
    "npm": lambda raw: semver.Version.parse(raw),
    "Go": _semver,
    "crates.io": _semver,
    "Maven": MavenVersion,
    "Packagist": _composer,
    "NuGet": NugetVersion,
    "RubyGems": RubygemsVersion,
}


def parse_version(ecosystem: str, raw: str) -> Any | None:
    """A comparable version object, or None when the ecosystem's library rejects it."""
    parser = _PARSERS.get(ecosystem)
    if parser is None or not isinstance(raw, str) or not raw:
        return None
    try:
        return parser(raw)
    except (InvalidVersion, ValueError, TypeError):
        return None


def _in_range(ecosystem: str, version: Any, events: list[Mapping[str, str]]) -> bool | None:
    parsed: list[tuple[str, Any]] = []
    limits: list[Any] = []
    for event in events:
        ((kind, raw),) = event.items()
        if kind == "limit" and raw == "*":
            continue
        bound = _MIN if kind == "introduced" and raw == "0" else parse_version(ecosystem, raw)
        if bound is None:
            return None  # the range can't be evaluated; the adapter reports it too
        if kind == "limit":
            limits.append(bound)
        else:
            parsed.append((kind, bound))
    parsed.sort(key=lambda item: (0, 0) if item[1] is _MIN else (1, _Key(item[1])))
    vulnerable = False
    for kind, bound in parsed:
        if kind == "introduced" and version >= bound:
            vulnerable = True
        elif (kind == "fixed" and version >= bound) or (kind == "last_affected" and version > bound):
            vulnerable = False
    return vulnerable and all(version < limit for limit in limits)


class _Key:
    """Sort key wrapper so mixed parsed versions sort through their own ``<``."""

    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v

    def __lt__(self, other: _Key) -> bool:
        return bool(self.v < other.v)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and bool(self.v == other.v)

    __hash__ = None  # type: ignore[assignment]


def is_affected(ecosystem: str, version: str, affected: Mapping[str, Any]) -> bool:
    """OSV's rule for one ``affected[]`` entry and one installed version."""
    installed = parse_version(ecosystem, version)
    for listed in affected.get("versions") or []:
        if listed == version:
            return True
        other = parse_version(ecosystem, listed)
        if installed is not None and other is not None and other == installed:
            return True
    if installed is None:
        return False
    for rng in affected.get("ranges") or []:
        if rng.get("type") not in ("SEMVER", "ECOSYSTEM"):
            continue
        if _in_range(ecosystem, installed, list(rng.get("events") or [])):
            return True
    return False


def _reported_ids(record: Mapping[str, Any]) -> list[str]:
    ids = [record["id"], *(record.get("aliases") or [])]
    cves = sorted({i for i in ids if i.startswith("CVE-")})
    return cves or [record["id"]]


def expected_findings(records: Iterable[Mapping[str, Any]], components: Iterable[Component]) -> set[Finding]:
    """Every (component, version, vulnerability id) the OSV records make vulnerable."""
    index: dict[tuple[str, str], list[tuple[Mapping[str, Any], Mapping[str, Any]]]] = {}
    for record in records:
        if record.get("withdrawn"):
            continue
        for affected in record.get("affected") or []:
            package = affected.get("package") or {}
            ecosystem, name = package.get("ecosystem"), package.get("name")
            if isinstance(ecosystem, str) and ecosystem in _NAME_KEY and isinstance(name, str):
                index.setdefault((ecosystem, _NAME_KEY[ecosystem](name)), []).append((record, affected))
    found: set[Finding] = set()
    for component in components:
        ecosystem = PURL_ECOSYSTEMS.get(component.purl_type)
        if ecosystem is None:
            continue
        for record, affected in index.get((ecosystem, _NAME_KEY[ecosystem](component.name)), []):
            if is_affected(ecosystem, component.version, affected):
                found.update((component.name, component.version, vid) for vid in _reported_ids(record))
    return found


# --- Trivy's own semantics ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Divergence:
    """A difference between OSV's meaning and what Trivy 0.76 reports, accepted as data.

    ``applies(finding, side, context)`` says whether this divergence explains one
    finding that only one side has (``side`` is ``"trivy-only"`` or ``"oracle-only"``);
    ``context`` maps a vulnerability id to the OSV records reported under it.
    """

    name: str
    reason: str
    applies: Callable[[Finding, str, Mapping[str, list[Mapping[str, Any]]]], bool]


def _pip_names_differ_only_by_dots(
    finding: Finding, side: str, ctx: Mapping[str, list[Mapping[str, Any]]]
) -> bool:
    name = finding[0]
    if side != "oracle-only":
        return False
    trivy_key = name.lower().replace("_", "-")
    for record in ctx.get(finding[2], []):
        for affected in record.get("affected") or []:
            package = affected.get("package") or {}
            if package.get("ecosystem") != "PyPI":
                continue
            other = str(package.get("name", ""))
            if _pep503(other) == _pep503(name) and other.lower().replace("_", "-") != trivy_key:
                return True
    return False


def _pep440_bound_rejected_by_trivy(
    finding: Finding, side: str, ctx: Mapping[str, list[Mapping[str, Any]]]
) -> bool:
    # The adapter drops ranges whose bounds Trivy's PEP 440 parser rejects (local labels
    # "+x"); packaging accepts them, so the oracle still evaluates those ranges.
    if side != "oracle-only":
        return False
    for record in ctx.get(finding[2], []):
        for affected in record.get("affected") or []:
            for rng in affected.get("ranges") or []:
                for event in rng.get("events") or []:
                    if any("+" in str(v) for v in event.values()):
                        return True
    return False


DIVERGENCES: tuple[Divergence, ...] = (
    Divergence(
        "pip-name-dots",
        "Trivy folds case and '_' in pip names but keeps '.', unlike PEP 503 (trivy-formats.md B.7): "
        "an advisory for 'zope-interface' is not found for a component 'zope.interface'",
        _pip_names_differ_only_by_dots,
    ),
    Divergence(
        "pep440-local-label",
        "Trivy's PEP 440 specifiers reject local version labels in bounds (trivy-formats.md E.1), "
        "so such ranges cannot be written and the adapter reports them as unparsable-version",
        _pep440_bound_rejected_by_trivy,
    ),
)


def explain(finding: Finding, side: str, context: Mapping[str, list[Mapping[str, Any]]]) -> Divergence | None:
    """The accepted divergence explaining a one-sided finding, if any."""
    for divergence in DIVERGENCES:
        if divergence.applies(finding, side, context):
            return divergence
    return None
