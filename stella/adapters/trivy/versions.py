"""OSV version ranges rendered as the constraint strings Trivy's comparers parse.

OSV describes affected versions as event lists (``introduced`` / ``fixed`` /
``last_affected`` / ``limit``) and enumerated ``versions``; Trivy stores OR-ed lists of
AND-constraints (``">=1.2.0, <1.2.5"``) that one comparer per ecosystem parses at scan
time (research/trivy-formats.md B.8, E.2). Trivy gives up on a whole advisory when any
single string fails to parse, so every bound is checked here against the grammar that
ecosystem's Trivy comparer accepts, and a bound it would reject is reported instead of
written: one bad version must not silently disable the rest of an advisory.

OSV evaluates events after sorting them by version. :func:`version_key` is the one
ordering of each scheme in this project (PEP 440 through ``packaging``, SemVer 2.0 by its
precedence rules, go-version's dotted numbers with pre-releases, Maven, RubyGems, dpkg
and rpm through ``univers``, apk by apk-tools' own token rules): events are swept in that
order here, and the
findings matcher (:mod:`stella.findings.match`) compares installed versions with it, so
a Trivy DB and a json:policy export can never disagree about which version is newer.
OS ranges are swept in the same order before the Trivy DB keeps their one fixed version.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from packaging.version import InvalidVersion, Version
from univers import maven

__all__ = [
    "ApkVersion",
    "Interval",
    "RangeResult",
    "Scheme",
    "VersionProblem",
    "IntervalSet",
    "exact_constraint",
    "intervals_from_events",
    "render_interval",
    "render_version",
    "same_version",
    "translate_ranges",
    "version_key",
    "version_renderer",
]


class Scheme(enum.Enum):
    """The version grammar of the Trivy comparer that will read a constraint."""

    PEP440 = "pep440"  # pip: aquasecurity/go-pep440-version
    NPM = "npm"  # npm: aquasecurity/go-npm-version (strict SemVer versions)
    GENERIC = "generic"  # go, cargo, composer, nuget, pub, hex, swift, ...: aquasecurity/go-version
    MAVEN = "maven"  # maven: masahiro331/go-mvn-version
    RUBYGEMS = "rubygems"  # rubygems: aquasecurity/go-gem-version
    DPKG = "dpkg"  # Debian, Ubuntu: knqyf263/go-deb-version
    APK = "apk"  # Alpine, Wolfi, Chainguard: knqyf263/go-apk-version
    RPM = "rpm"  # Rocky, Alma: knqyf263/go-rpm-version

    @property
    def is_os(self) -> bool:
        """OS versions are compared by Trivy's OS detector, never parsed as constraints."""
        return self in (Scheme.DPKG, Scheme.APK, Scheme.RPM)


@dataclass(frozen=True, slots=True)
class VersionProblem:
    """Why part of a range could not be rendered; becomes an ``Untranslated``."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Interval:
    """One affected interval: ``lower <= v`` and ``v < upper`` (or ``<=``), ``v < limit``.

    ``None`` bounds are open. Versions are already rendered in the scheme's syntax.
    """

    lower: str | None
    upper: str | None = None
    upper_inclusive: bool = False
    limit: str | None = None


@dataclass(frozen=True, slots=True)
class RangeResult:
    """What the ``SEMVER``/``ECOSYSTEM`` ranges of one affected entry became."""

    intervals: tuple[Interval, ...]
    fixed: tuple[str, ...]
    problems: tuple[VersionProblem, ...]
    git_ranges: int


# --- grammars ------------------------------------------------------------------------

# SemVer 2.0 (semver.org), optionally with the "v" that OSV Go/npm data never carries
# but SBOMs do; go-npm-version accepts the prefix.
_SEMVER = re.compile(
    r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
# The version grammar of aquasecurity/go-version (numeric dotted release, optional
# pre-release with or without a dash, optional build metadata).
_GENERIC = re.compile(
    r"^v?(\d+(?:\.\d+)*)"
    r"(?:-[0-9]+[0-9A-Za-z\-~]*(?:\.[0-9A-Za-z\-~]+)*|-?[A-Za-z\-~]+[0-9A-Za-z\-~]*(?:\.[0-9A-Za-z\-~]+)*)?"
    r"(?:\+[0-9A-Za-z\-~]+(?:\.[0-9A-Za-z\-~]+)*)?$"
)
# RubyGems' Gem::Version pattern.
_RUBYGEMS = re.compile(r"[0-9]+(?:\.[0-9A-Za-z]+)*(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?")
# Maven versions are free-form; the operator-form constraint parser needs a token with
# no separators, operators or brackets in it.
_MAVEN = re.compile(r"[0-9A-Za-z][0-9A-Za-z._\-]*")
_OS = re.compile(r"\S+")
_UINT64_MAX = 2**64 - 1

# Bounds meaning "from the very first version": OSV writes "0"; RustSec writes the
# smallest SemVer "0.0.0-0".
_OPEN_LOWER = frozenset({"0", "0.0.0-0"})


def render_version(scheme: Scheme, raw: str) -> str | VersionProblem:
    """The version as Trivy's comparer for ``scheme`` will accept it, or why not."""
    if not isinstance(raw, str) or not raw:
        return VersionProblem("malformed", f"version {raw!r} is not a non-empty string")
    rendered: str | VersionProblem = _RENDERED[scheme][raw]
    return rendered


def version_renderer(scheme: Scheme) -> Callable[[str], str | VersionProblem]:
    """:func:`render_version` of ``scheme`` for strings, as one memo lookup per call.

    For loops over many versions of one package (an OSV ``versions`` list): the scheme
    is looked up once, not per version.
    """
    return _RENDERED[scheme].__getitem__


_MEMO_LIMIT = 65536


class _Memo(dict[str, Any]):
    """A bounded memo of a pure function of one string: a hit is one dict lookup.

    ``functools.lru_cache`` keyed by ``(scheme, raw)`` hashed the enum member in Python
    on every call, the largest single cost of rendering a version list. Emptied when
    full: the values are pure, so forgetting them changes nothing but time.
    """

    __slots__ = ("_compute",)

    def __init__(self, compute: Callable[[str], Any]) -> None:
        super().__init__()
        self._compute = compute

    def __missing__(self, raw: str) -> Any:
        if len(self) >= _MEMO_LIMIT:
            self.clear()
        value = self[raw] = self._compute(raw)
        return value


# Feeds repeat the same versions across thousands of records (PyPA lists every release).
def _render(scheme: Scheme, raw: str) -> str | VersionProblem:
    if not raw:
        return VersionProblem("malformed", f"version {raw!r} is not a non-empty string")
    if scheme is Scheme.PEP440:
        try:
            parsed = Version(raw)
        except InvalidVersion:
            return VersionProblem("unparsable-version", f"{raw!r} is not a PEP 440 version")
        if parsed.local is not None:
            return VersionProblem(
                "unparsable-version", f"{raw!r}: Trivy's PEP 440 specifiers reject local version labels"
            )
        # Canonical form: Trivy rejects upper case and long pre-release spellings.
        return str(parsed)
    if scheme is Scheme.NPM:
        ok = _SEMVER.fullmatch(raw) is not None
    elif scheme is Scheme.GENERIC:
        match = _GENERIC.fullmatch(raw)
        ok = match is not None and all(int(part) <= _UINT64_MAX for part in match.group(1).split("."))
    elif scheme is Scheme.RUBYGEMS:
        ok = _RUBYGEMS.fullmatch(raw) is not None
    elif scheme is Scheme.MAVEN:
        ok = _MAVEN.fullmatch(raw) is not None
    else:
        ok = _OS.fullmatch(raw) is not None
    if not ok:
        return VersionProblem(
            "unparsable-version", f"{raw!r} is not a {scheme.value} version Trivy can parse"
        )
    return raw


_RENDERED: Mapping[Scheme, _Memo] = {scheme: _Memo(functools.partial(_render, scheme)) for scheme in Scheme}

# --- ordering --------------------------------------------------------------------------


@functools.lru_cache(maxsize=65536)
def _semver_key(raw: str) -> tuple[Any, ...] | None:
    """SemVer 2.0 precedence as a sort key (build metadata ignored), or None."""
    match = _SEMVER.fullmatch(raw)
    if match is None:
        return None
    major, minor, patch, pre, _build = match.groups()
    if pre is None:
        pre_key: tuple[Any, ...] = (1,)
    else:
        idents = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
        pre_key = (0, idents)
    return (int(major), int(minor), int(patch), pre_key)


@functools.lru_cache(maxsize=65536)
def _pep440_key(raw: str) -> Version | None:
    try:
        return Version(raw)
    except InvalidVersion:
        return None


# go-version: dotted numbers (trailing zeros insignificant), then an optional pre-release
# that sorts below the release; build metadata is ignored.
_GENERIC_PARTS = re.compile(r"v?(\d+(?:\.\d+)*)(?:-?([0-9A-Za-z\-~]+(?:\.[0-9A-Za-z\-~]+)*))?(?:\+.*)?")


def _identifiers(pre: str) -> tuple[Any, ...]:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))


@functools.lru_cache(maxsize=65536)
def _generic_key(raw: str) -> tuple[Any, ...] | None:
    if _GENERIC.fullmatch(raw) is None:
        return None
    match = _GENERIC_PARTS.fullmatch(raw)
    if match is None:
        return None
    release = [int(part) for part in match.group(1).split(".")]
    while len(release) > 1 and release[-1] == 0:
        release.pop()
    pre = match.group(2)
    return (tuple(release), (1,) if pre is None else (0, _identifiers(pre)))


def _univers(cls_name: str) -> Callable[[str], Any]:
    @functools.lru_cache(maxsize=65536)
    def key(raw: str) -> Any:
        from univers import versions

        try:
            return getattr(versions, cls_name)(raw)
        except Exception:  # univers raises InvalidVersion, ValueError or TypeError by scheme
            return None

    return key


class _MavenOrder(maven.Version):
    """Maven's ComparableVersion as Maven 3.6.3+ and Trivy's go-mvn-version order it.

    univers' port predates MNG-6964: a sub-list compared with "nothing" looks at its first
    item only, so ``3.24.1-GA.1`` (sub-list ``["", 1]``) equals ``3.24.1-GA``. Maven now
    compares every item with null, which puts ``-GA.1`` after ``-GA``; only that rule is
    replaced here, the parsing and every other comparison stay univers'.
    """

    def _list_compare(self, items: Any, other: Any) -> int:
        if other is None:
            for item in items:
                result = int(self._compare(item, None))  # type: ignore[no-untyped-call]
                if result:
                    return result
            return 0
        return int(super()._list_compare(items, other))  # type: ignore[no-untyped-call]


@functools.lru_cache(maxsize=65536)
def _maven_key(raw: str) -> _MavenOrder | None:
    try:
        return _MavenOrder(raw)  # type: ignore[no-untyped-call]
    except Exception:  # the parser raises ValueError or TypeError on odd input
        return None


# apk-tools' version grammar, token by token (apk's version.c; Trivy: knqyf263/go-apk-version).
# No Python library orders apk versions: univers reads them as Gentoo versions, which
# rejects the post-release suffixes Alpine ships (``musl 1.2.4_git20230717-r4``). Token
# kinds in apk's order -- a version that ends where the other goes on is older unless the
# other continues with a pre-release suffix.
_DIGIT_OR_ZERO, _DIGIT, _LETTER, _SUFFIX, _SUFFIX_NO, _REVISION_NO, _END = range(7)
_INVALID = -1
_PRE_SUFFIXES = ("alpha", "beta", "pre", "rc")  # -4 .. -1
_POST_SUFFIXES = ("cvs", "svn", "git", "hg", "p")  # 0 .. 4


def _apk_next(raw: str, at: int, kind: int) -> tuple[int, int]:
    """The kind of the token after a ``kind`` token, and where it starts."""
    if at >= len(raw):
        return _END, at
    char = raw[at]
    if kind in (_DIGIT, _DIGIT_OR_ZERO) and char.islower():
        found = _LETTER
    elif kind == _LETTER and char in "0123456789":
        found = _DIGIT
    elif kind == _SUFFIX and char in "0123456789":
        found = _SUFFIX_NO
    elif char == ".":
        found, at = _DIGIT_OR_ZERO, at + 1
    elif char == "_":
        found, at = _SUFFIX, at + 1
    elif char == "-":  # "-r": the letter after the dash is skipped unread, as apk does
        found, at = (_REVISION_NO, at + 2) if at + 1 < len(raw) else (_INVALID, at)
    else:
        found = _INVALID
    if found < kind and not (
        (found == _DIGIT_OR_ZERO and kind == _DIGIT)
        or (found == _SUFFIX and kind == _SUFFIX_NO)
        or (found == _DIGIT and kind == _LETTER)
    ):
        return _INVALID, at
    return found, at


def _apk_digits(raw: str, at: int) -> tuple[int, int]:
    end = at
    while end < len(raw) and raw[end] in "0123456789":
        end += 1
    return (int(raw[at:end]) if end > at else 0), end


def _apk_tokens(raw: str) -> tuple[tuple[int, int], ...]:
    """(value, kind of the next token) for each token, ending with kind END or INVALID."""
    out: list[tuple[int, int]] = []
    kind, at = _DIGIT, 0
    while kind not in (_END, _INVALID):
        after: int | None = None
        if kind == _DIGIT_OR_ZERO and raw.startswith("0", at):
            zeros = len(raw[at:]) - len(raw[at:].lstrip("0"))  # leading zeros sort as negative
            value, at, after = -zeros, at + zeros, _DIGIT
        elif kind in (_DIGIT_OR_ZERO, _DIGIT, _SUFFIX_NO, _REVISION_NO):
            value, at = _apk_digits(raw, at)
        elif kind == _LETTER:
            value, at = ord(raw[at]), at + 1
        else:  # _SUFFIX
            name = next((s for s in (*_PRE_SUFFIXES, *_POST_SUFFIXES) if raw.startswith(s, at)), None)
            if name is None:
                out.append((-1, _INVALID))
                break
            value = (
                _PRE_SUFFIXES.index(name) - len(_PRE_SUFFIXES)
                if name in _PRE_SUFFIXES
                else _POST_SUFFIXES.index(name)
            )
            at += len(name)
        if at >= len(raw):
            kind = _END
        elif after is not None:
            kind = after
        else:
            kind, at = _apk_next(raw, at, kind)
        out.append((value, kind))
    return tuple(out)


@functools.total_ordering
class ApkVersion:
    """An apk package version, ordered as ``apk version -t`` (and Trivy's Alpine detector) order it."""

    __slots__ = ("raw", "_tokens")

    def __init__(self, raw: str) -> None:
        self.raw = raw
        self._tokens = _apk_tokens(raw)

    @property
    def valid(self) -> bool:
        return self._tokens[-1][1] == _END

    def _compare(self, other: ApkVersion) -> int:
        a, b = self._tokens, other._tokens
        index, (av, at), (bv, bt) = 0, (0, _DIGIT), (0, _DIGIT)
        while at == bt and at not in (_END, _INVALID) and av == bv:
            (av, at), (bv, bt) = a[index], b[index]
            index += 1
        if av != bv:
            return -1 if av < bv else 1
        if at == bt:
            return 0
        # Equal so far: the longer one is newer, unless it goes on with a pre-release suffix.
        if at == _SUFFIX and a[index][0] < 0:
            return -1
        if bt == _SUFFIX and b[index][0] < 0:
            return 1
        return -1 if at > bt else 1 if at < bt else 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApkVersion) and self._compare(other) == 0

    def __lt__(self, other: ApkVersion) -> bool:
        return self._compare(other) < 0

    def __hash__(self) -> int:
        return hash(self._tokens)

    def __repr__(self) -> str:
        return f"ApkVersion({self.raw!r})"


@functools.lru_cache(maxsize=65536)
def _apk_key(raw: str) -> ApkVersion | None:
    version = ApkVersion(raw)
    return version if version.valid else None


_KEYS: Mapping[Scheme, Callable[[str], Any]] = {
    Scheme.PEP440: _pep440_key,
    Scheme.NPM: _semver_key,
    Scheme.GENERIC: _generic_key,
    Scheme.MAVEN: _maven_key,
    Scheme.RUBYGEMS: _univers("RubygemsVersion"),
    Scheme.DPKG: _univers("DebianVersion"),
    Scheme.APK: _apk_key,
    Scheme.RPM: _univers("RpmVersion"),
}


def version_key(scheme: Scheme, raw: str) -> Any | None:
    """A value ordering versions of ``scheme`` as that ecosystem does; None if unparsable.

    Keys of one scheme compare with each other only.
    """
    if not isinstance(raw, str) or not raw:
        return None
    return _KEYS[scheme](raw)


def same_version(scheme: Scheme, listed: str, installed: str) -> bool:
    """Is ``installed`` the ``listed`` version (OSV ``versions``, Trivy ``=v``)?

    Equal in the scheme's ordering; for PEP 440 a listed public version also matches an
    installed one with a local label (``2.0.1`` matches ``2.0.1+cu118``), which is how
    PEP 440's ``==`` -- and so Trivy's -- treats local versions.
    """
    if listed == installed:
        return True
    key = version_key(scheme, installed)
    if key is None:
        return False
    other = version_key(scheme, listed)
    if other is not None and other == key:
        return True
    return (
        scheme is Scheme.PEP440 and other is not None and other.local is None and key.public == other.public
    )


@functools.lru_cache(maxsize=65536)
def _pep440_order(raw: str) -> Any:
    """The tuple ``packaging`` compares two versions by (``Version._key``), or None.

    ``Version``'s comparisons compare exactly these tuples, but through Python methods;
    comparing the tuples themselves gives the same order in C, which is what sweeping
    events and testing listed versions against ranges do thousands of times a second.
    """
    version = _pep440_key(raw)
    return None if version is None else version._key


# The orderings used only to compare versions with each other (never shown, never
# handed out): equal to :data:`_KEYS`' order, cheaper to compare.
_ORDER: Mapping[Scheme, Callable[[str], Any]] = {**_KEYS, Scheme.PEP440: _pep440_order}


def _sort_key(scheme: Scheme, range_type: str) -> Callable[[str], Any]:
    if range_type == "SEMVER" and scheme is Scheme.GENERIC:
        return _semver_key  # a SEMVER range is SemVer whatever the ecosystem
    return _ORDER[scheme]


# --- events → intervals ------------------------------------------------------------------

_EVENT_KINDS = ("introduced", "fixed", "last_affected", "limit")
_EVENT_KIND_SET = frozenset(_EVENT_KINDS)


def _read_events(events: Any, where: str) -> list[tuple[str, str]] | VersionProblem:
    if not isinstance(events, list):
        return VersionProblem("malformed", f"{where}: events is not a list")
    out: list[tuple[str, str]] = []
    for event in events:
        if type(event) is dict and len(event) == 1:  # the usual shape, decided without the scan below
            ((kind, version),) = event.items()
            if kind in _EVENT_KIND_SET and type(version) is str and version:
                out.append((kind, version))
                continue
        if not isinstance(event, Mapping):
            return VersionProblem("malformed", f"{where}: event {event!r} is not an object")
        kinds = [k for k in _EVENT_KINDS if k in event]
        if len(kinds) != 1 or not isinstance(event[kinds[0]], str) or not event[kinds[0]]:
            return VersionProblem("malformed", f"{where}: event {dict(event)!r} needs exactly one version")
        out.append((kinds[0], event[kinds[0]]))
    return out


def intervals_from_events(
    scheme: Scheme, range_type: str, events: Sequence[tuple[str, str]], where: str
) -> tuple[tuple[Interval, ...], tuple[str, ...]] | VersionProblem:
    """Sweep OSV events (sorted when the scheme allows) into rendered intervals.

    Returns the intervals and the rendered ``fixed`` versions, or the first problem:
    a range with one unrenderable bound is dropped whole, because its remaining
    bounds alone would describe a different set of versions.
    """
    rendered: list[tuple[str, str | None]] = []
    limits: list[str] = []
    render = _RENDERED[scheme]
    for kind, raw in events:
        if kind == "introduced" and raw in _OPEN_LOWER:
            rendered.append((kind, None))
            continue
        if kind == "limit" and raw == "*":
            continue
        version = render[raw] if type(raw) is str else render_version(scheme, raw)
        if isinstance(version, VersionProblem):
            return VersionProblem(version.reason, f"{where}: {version.detail}")
        if kind == "limit":
            limits.append(version)
        else:
            rendered.append((kind, version))

    key = _sort_key(scheme, range_type)
    keyed = [(kind, v, None if v is None else key(v)) for kind, v in rendered]
    if all(k is not None for _kind, v, k in keyed if v is not None):
        # Stable sort: "introduced 0" first, ties keep the producer's order.
        keyed.sort(key=lambda item: (item[2] is not None, item[2] if item[2] is not None else 0))
        rendered = [(kind, v) for kind, v, _k in keyed]

    limit = limits[0] if len(limits) == 1 else None
    if len(limits) > 1:
        limit_keys = [key(v) for v in limits]
        if any(k is None for k in limit_keys):
            return VersionProblem("unsupported-range", f"{where}: several limit events cannot be ordered")
        limit = limits[limit_keys.index(min(limit_keys))]

    intervals: list[Interval] = []
    fixed: list[str] = []
    open_lower: str | None = None
    is_open = False
    for kind, bound in rendered:
        if kind == "introduced":
            if not is_open:
                open_lower, is_open = bound, True
        elif is_open and bound is not None:
            if kind == "fixed":
                intervals.append(Interval(open_lower, bound, False, limit))
                fixed.append(bound)
            else:  # last_affected
                intervals.append(Interval(open_lower, bound, True, limit))
            is_open = False
        elif kind == "fixed" and bound is not None:
            fixed.append(bound)  # a fix with nothing open still names a fixed release
    if is_open:
        intervals.append(Interval(open_lower, None, False, limit))
    return tuple(intervals), tuple(fixed)


def _op_eq(scheme: Scheme) -> str:
    return "==" if scheme is Scheme.PEP440 else "="


def render_interval(scheme: Scheme, interval: Interval) -> str:
    """One AND-constraint string; the empty string means "every version" to Trivy (E.2)."""
    lower, upper = interval.lower, interval.upper
    if lower is not None and upper is not None and interval.upper_inclusive and lower == upper:
        return f"{_op_eq(scheme)}{lower}"
    parts: list[str] = []
    if lower is not None:
        parts.append(f">={lower}")
    if upper is not None:
        parts.append(f"<={upper}" if interval.upper_inclusive else f"<{upper}")
    if interval.limit is not None and (upper is None or interval.limit != upper):
        parts.append(f"<{interval.limit}")
    return ", ".join(parts)


def exact_constraint(scheme: Scheme, version: str) -> str:
    """The constraint matching exactly one (already rendered) version."""
    return f"{_op_eq(scheme)}{version}"


def translate_ranges(scheme: Scheme, ranges: Iterable[Any], where: str) -> RangeResult:
    """All ranges of one affected entry; GIT ranges are counted, not translated."""
    intervals: list[Interval] = []
    fixed: list[str] = []
    problems: list[VersionProblem] = []
    git = 0
    for index, rng in enumerate(ranges):
        here = f"{where} range {index}"
        if type(rng) is not dict and not isinstance(rng, Mapping):
            problems.append(VersionProblem("malformed", f"{here}: not an object"))
            continue
        range_type = rng.get("type")
        if range_type == "GIT":
            git += 1
            continue
        if range_type not in ("SEMVER", "ECOSYSTEM"):
            problems.append(VersionProblem("unsupported-range", f"{here}: range type {range_type!r}"))
            continue
        events = _read_events(rng.get("events"), here)
        if isinstance(events, VersionProblem):
            problems.append(events)
            continue
        result = intervals_from_events(scheme, range_type, events, here)
        if isinstance(result, VersionProblem):
            problems.append(result)
            continue
        intervals.extend(result[0])
        fixed.extend(result[1])
    return RangeResult(tuple(intervals), tuple(fixed), tuple(problems), git)


class IntervalSet:
    """Intervals of one package, keyed once, to test listed and fixed versions against."""

    __slots__ = ("_key", "_keyed")

    def __init__(self, scheme: Scheme, intervals: Iterable[Interval]) -> None:
        key = self._key = None if scheme.is_os else _ORDER[scheme]
        keyed: list[tuple[Any, Any, bool, Any]] | None = []
        for interval in intervals:
            if key is None:
                keyed = None
                break
            lower, upper, limit = interval.lower, interval.upper, interval.limit
            lower_key = None if lower is None else key(lower)
            upper_key = None if upper is None else key(upper)
            limit_key = None if limit is None else key(limit)
            if (
                (lower_key is None and lower is not None)
                or (upper_key is None and upper is not None)
                or (limit_key is None and limit is not None)
            ):
                keyed = None  # a bound this module cannot order
                break
            assert keyed is not None
            keyed.append((lower_key, upper_key, interval.upper_inclusive, limit_key))
        self._keyed = keyed

    def covers(self, version: str) -> bool | None:
        """Whether ``version`` lies in any interval; None when this module can't order them.

        Used only to avoid writing redundant or harmful constraints, so "don't know" is safe.
        """
        return self.covering((version,))[0]

    def covering(self, versions: Iterable[str]) -> list[bool | None]:
        """:meth:`covers` of each version, in one loop (a package may list hundreds)."""
        keyed, key = self._keyed, self._key
        if keyed is None or key is None:
            return [None for _version in versions]
        out: list[bool | None] = []
        for target in map(key, versions):
            if target is None:
                out.append(None)
                continue
            for lower, upper, inclusive, limit in keyed:
                if lower is not None and target < lower:
                    continue
                if upper is not None and (target > upper or (target == upper and not inclusive)):
                    continue
                if limit is not None and not target < limit:
                    continue
                out.append(True)
                break
            else:
                out.append(False)
        return out
