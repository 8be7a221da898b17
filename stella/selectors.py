"""Selectors: which ledger records an export includes.

Grammar: ``--selector key=value[,value...]``, repeatable. Semantics, chosen so that a
selector list reads like a query:

* values of one key are alternatives (OR); repeating a key adds alternatives;
* different keys must all hold (AND);
* ``exclude-id`` removes records whatever else matches;
* patterns (``package``, ``purl``, ``subject``, ``id``, ``exclude-id``) are shell-style
  globs (``*``, ``?``, ``[...]``), case-insensitive;
* time windows are half-open: ``since`` inclusive, ``until`` exclusive; a record
  without the timestamp in question is outside any window on it.

The tenant is not a selector key: it is required on every surface and scopes the
ledger read itself, so no selector can widen it.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from stella.documents.interface import normalize_time
from stella.errors import InputError, UsageError
from stella.model import Kind, LedgerRecord, LedgerRow

__all__ = ["SELECTOR_KEYS", "Selectors", "parse_selectors", "selector_help", "selector_warnings"]

_KIND_NAMES = {k.value: k for k in Kind} | {k.plural: k for k in Kind}

# key -> (attribute, description) ; the single source for parsing, errors and docs.
SELECTOR_KEYS: Mapping[str, tuple[str, str]] = {
    "kind": ("kinds", "record kinds: advisory, sbom, vex, finding (plurals accepted)"),
    "ecosystem": (
        "ecosystems",
        "OSV ecosystem names (PyPI, npm, Go, Maven, crates.io, ...); SBOM/VEX purl types map to them",
    ),
    "package": ("packages", "package-name globs (advisory packages, SBOM component names)"),
    "purl": ("purls", "purl globs (advisory, SBOM component and VEX product purls)"),
    "subject": ("subjects", "SBOM subject globs (the component an SBOM describes)"),
    "id": ("ids", "id globs matched against upstream ids and aliases (include only these)"),
    "exclude-id": ("exclude_ids", "id globs to leave out, matched against upstream ids and aliases"),
    "modified-since": ("modified_since", "records modified at or after this RFC 3339 time or date"),
    "modified-until": ("modified_until", "records modified before this time"),
    "ingested-since": ("ingested_since", "records ingested at or after this time"),
    "ingested-until": ("ingested_until", "records ingested before this time"),
}
# Plural spellings people naturally type; they mean the same key.
_ALIASES = {
    "kinds": "kind",
    "ecosystems": "ecosystem",
    "packages": "package",
    "purls": "purl",
    "subjects": "subject",
    "ids": "id",
    "exclude-ids": "exclude-id",
}
_SINGLE = {"modified-since", "modified-until", "ingested-since", "ingested-until"}
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _valid_keys() -> str:
    return ", ".join(SELECTOR_KEYS)


def _time(key: str, value: str) -> str:
    text = f"{value}T00:00:00Z" if _DATE_ONLY.fullmatch(value) else value
    try:
        normalized = normalize_time(text, field=key)
    except InputError as exc:
        raise UsageError(
            f"selector {key}={value!r}: not an RFC 3339 time or YYYY-MM-DD date",
            details={"key": key, "value": value},
        ) from exc
    assert normalized is not None
    return normalized


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


@dataclass(frozen=True)
class _Patterns:
    """Case-insensitive shell globs; patterns without ``*?[`` are a set lookup, not a regex branch.

    A long ``exclude-id`` list (a mirror delta's removals) is mostly plain ids: one regex
    of thousands of alternatives costs tens of microseconds per record, a set lookup none.
    """

    exact: frozenset[str]
    globs: re.Pattern[str] | None

    def match(self, text: str) -> bool:
        return text in self.exact or (self.globs is not None and self.globs.match(text) is not None)


def _globs(patterns: Iterable[str]) -> _Patterns:
    lowered = [p.lower() for p in patterns]
    exact = frozenset(p for p in lowered if not any(c in p for c in "*?["))
    wild = [p for p in lowered if p not in exact]
    return _Patterns(
        exact, re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in wild)) if wild else None
    )


@dataclass(frozen=True)
class Selectors:
    """A normalised, hashable selection. Empty tuples / None mean 'no constraint'."""

    kinds: tuple[str, ...] = ()
    ecosystems: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    purls: tuple[str, ...] = ()
    subjects: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    exclude_ids: tuple[str, ...] = ()
    modified_since: str | None = None
    modified_until: str | None = None
    ingested_since: str | None = None
    ingested_until: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The manifest form: only constraints that are set, keys in selector spelling."""
        out: dict[str, Any] = {}
        for key, (attr, _) in SELECTOR_KEYS.items():
            value = getattr(self, attr)
            if value:
                out[key] = list(value) if isinstance(value, tuple) else value
        return out

    def to_args(self) -> list[str]:
        """``key=value,...`` strings that parse back to an equal Selectors."""
        return [f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in self.to_json().items()]

    @cached_property
    def _ecosystems_lower(self) -> frozenset[str]:
        return frozenset(e.lower() for e in self.ecosystems)

    @cached_property
    def _matchers(self) -> dict[str, _Patterns]:
        return {
            attr: _globs(getattr(self, attr))
            for attr in ("packages", "purls", "subjects", "ids", "exclude_ids")
            if getattr(self, attr)
        }

    @cached_property
    def _windows(
        self,
    ) -> tuple[tuple[datetime | None, datetime | None], tuple[datetime | None, datetime | None]]:
        def bound(text: str | None) -> datetime | None:
            return _parse_time(text) if text else None

        return (
            (bound(self.modified_since), bound(self.modified_until)),
            (bound(self.ingested_since), bound(self.ingested_until)),
        )

    @cached_property
    def is_empty(self) -> bool:
        """No constraint at all: every record is selected (exports skip matching then)."""
        return self == Selectors()

    def matches(self, record: LedgerRecord) -> bool:
        """Whether ``record`` is selected. Pure; the same answer on every worker."""
        link = record.linkset
        return self._matches(
            record.kind.value,
            record.upstream_id,
            record.modified,
            record.ingested_at,
            link.ecosystems,
            link.packages,
            link.purls,
            link.aliases,
            link.vex_products,
            link.sbom_subject,
        )

    def matches_row(self, row: LedgerRow) -> bool:
        """:meth:`matches` of a ledger row (the row read path), without building its record."""
        return self._matches(
            row["kind"],
            row["upstream_id"],
            row["modified"],
            row["ingested_at"],
            row["ecosystems"],
            row["packages"],
            row["purls"],
            row["aliases"],
            row["vex_products"],
            row["sbom_subject"],
        )

    def _matches(
        self,
        kind: str,
        upstream_id: str,
        modified: str | None,
        ingested_at: str,
        ecosystems: Sequence[str],
        packages: Sequence[str],
        purls: Sequence[str],
        aliases: Sequence[str],
        vex_products: Sequence[str],
        sbom_subject: str | None,
    ) -> bool:
        if self.kinds and kind not in self.kinds:
            return False
        if self.ecosystems and not self._ecosystems_lower.intersection(e.lower() for e in ecosystems):
            return False
        matchers = self._matchers
        ids = (upstream_id, *aliases)
        exclude = matchers.get("exclude_ids")
        if exclude is not None and any(exclude.match(i.lower()) for i in ids):
            return False
        include = matchers.get("ids")
        if include is not None and not any(include.match(i.lower()) for i in ids):
            return False
        package_matcher = matchers.get("packages")
        if package_matcher is not None and not any(package_matcher.match(p.lower()) for p in packages):
            return False
        purl_matcher = matchers.get("purls")
        if purl_matcher is not None:
            candidates = (*purls, *vex_products, *((sbom_subject,) if sbom_subject else ()))
            if not any(purl_matcher.match(p.lower()) for p in candidates):
                return False
        subjects = matchers.get("subjects")
        if subjects is not None and not (sbom_subject and subjects.match(sbom_subject.lower())):
            return False
        (m_since, m_until), (i_since, i_until) = self._windows
        if m_since or m_until:
            if modified is None:
                return False
            moment = _parse_time(modified)
            if (m_since and moment < m_since) or (m_until and moment >= m_until):
                return False
        if i_since or i_until:
            moment = _parse_time(ingested_at)
            if (i_since and moment < i_since) or (i_until and moment >= i_until):
                return False
        return True


def parse_selectors(arguments: Sequence[str]) -> Selectors:
    """Parse ``key=value[,value]`` strings.

    Raises:
        UsageError: unknown key (the message lists the valid ones), empty value, a bad
            kind or timestamp, a time window key given twice, or an empty window.
    """
    values: dict[str, list[str]] = {}
    for argument in arguments:
        key, sep, raw = argument.partition("=")
        key = key.strip().lower()
        key = _ALIASES.get(key, key)
        if not sep:
            raise UsageError(
                f"selector {argument!r} is not key=value; valid keys: {_valid_keys()}",
                details={"selector": argument, "validKeys": list(SELECTOR_KEYS)},
            )
        if key not in SELECTOR_KEYS:
            raise UsageError(
                f"unknown selector key {key!r}; valid keys: {_valid_keys()}",
                details={"key": key, "validKeys": list(SELECTOR_KEYS)},
            )
        items = [v.strip() for v in raw.split(",")]
        if not raw.strip() or any(not v for v in items):
            raise UsageError(f"selector {key}= has an empty value", details={"key": key})
        values.setdefault(key, []).extend(items)
    kwargs: dict[str, Any] = {}
    for key, items in values.items():
        attr = SELECTOR_KEYS[key][0]
        if key in _SINGLE:
            if len(items) != 1:
                raise UsageError(f"selector {key} takes one value, got {len(items)}", details={"key": key})
            kwargs[attr] = _time(key, items[0])
        elif key == "kind":
            kinds = []
            for item in items:
                kind = _KIND_NAMES.get(item.lower())
                if kind is None:
                    raise UsageError(
                        f"selector kind={item!r}: valid kinds are {', '.join(k.value for k in Kind)}",
                        details={"key": key, "value": item},
                    )
                kinds.append(kind.value)
            kwargs[attr] = tuple(sorted(set(kinds)))
        else:
            kwargs[attr] = tuple(sorted(set(items)))
    selectors = Selectors(**kwargs)
    for since, until in (("modified_since", "modified_until"), ("ingested_since", "ingested_until")):
        low, high = getattr(selectors, since), getattr(selectors, until)
        if low and high and _parse_time(low) >= _parse_time(high):
            raise UsageError(
                f"empty time window: {since.replace('_', '-')}={low} is not before {until.replace('_', '-')}={high}",
                details={"since": low, "until": high},
            )
    return selectors


def selector_help() -> str:
    """One line per key, for ``--help`` and the docs (kept in sync by a test)."""
    return "\n".join(f"  {key:<15} {text}" for key, (_, text) in SELECTOR_KEYS.items())


def selector_warnings(selectors: Selectors) -> list[str]:
    """Values that match no ecosystem any record can carry: a likely typo, said before the run.

    Only a warning: the selection stays as given (an export that then selects nothing
    fails on its own, ``ERR_EXPORT_EMPTY_SELECTION``).
    """
    import difflib

    from stella.adapters.trivy.ecosystems import known_ecosystems

    known = known_ecosystems()
    lowered = {name.lower() for name in known}
    warnings = []
    for value in selectors.ecosystems:
        if value.split(":", 1)[0].lower() in lowered:
            continue
        close = difflib.get_close_matches(value, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        warnings.append(f"selector ecosystem={value} matches no known ecosystem{hint}")
    return warnings
