"""The policy language: YAML in, a validated :class:`Policy` out, or an error naming file, line and reason.

A policy is what an auditor reads to know why a build failed, so it must mean exactly what
it says: YAML is composed into nodes first (so every value keeps its line), a key given
twice is refused instead of silently keeping the last one, timestamps stay strings (YAML
1.1 would turn ``2027-01-01`` into a date), and the document is then validated against
``schemas/policy.schema.json`` with ``jsonschema``, whose error path is mapped back to the
line of the offending key. Only then does it become typed objects.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

import jsonschema
import yaml

from stella.documents.interface import normalize_time
from stella.errors import InputError, StellaError
from stella.guards.files import read_user_file

__all__ = [
    "API_VERSION",
    "Conditions",
    "Exception_",
    "Policy",
    "Rule",
    "load_policy",
    "parse_policy",
    "policy_schema",
]

API_VERSION = "stella.policy/v1"
MAX_POLICY_BYTES = 4 * 1024 * 1024
LEVELS = ("none", "low", "medium", "high", "critical")


@functools.cache
def policy_schema() -> dict[str, Any]:
    text = resources.files("schemas").joinpath("policy.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@dataclass(frozen=True, slots=True)
class Conditions:
    """Every set field must hold (AND); a list holds when any of its values does (OR)."""

    severity_at_least: str | None = None
    severity_below: str | None = None
    cvss_at_least: float | None = None
    cvss_below: float | None = None
    fix_available: bool | None = None
    vex_status: tuple[str, ...] = ()
    justification: tuple[str, ...] = ()
    vex_conflict: bool | None = None
    ecosystems: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    purls: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    age_at_least: int | None = None
    age_below: int | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    verdict: str
    when: Conditions


@dataclass(frozen=True, slots=True)
class Exception_:  # ``Exception`` is taken by Python
    id: str
    owner: str
    reason: str
    expires: str  # normalized UTC RFC 3339
    verdict: str
    match: Conditions


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated policy; ``document`` is the JSON value the snapshot is made from."""

    name: str
    default_verdict: str
    rules: tuple[Rule, ...]
    exceptions: tuple[Exception_, ...]
    document: Mapping[str, Any]


# --- YAML with lines and without surprises ------------------------------------------------


class _Loader(yaml.SafeLoader):  # type: ignore[misc]
    """SafeLoader that refuses duplicate keys and leaves timestamps as strings."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _fail(source: str, line: int | None, reason: str) -> InputError:
    where = f"{source}:{line}" if line is not None else source
    return InputError(f"{where}: {reason}", details={"file": source, "line": line, "reason": reason})


def _positions(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int], source: str) -> None:
    """Line (1-based) of every value, and of every key, by JSON path; duplicate keys refused."""
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _fail(source, line, f"duplicate key {key!r} (first given on line {seen[key]})")
            seen[key] = line
            out[(*path, key)] = line
            _positions(value_node, (*path, key), out, source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _positions(item, (*path, index), out, source)


def _line_of(
    error: jsonschema.ValidationError, lines: Mapping[tuple[Any, ...], int]
) -> tuple[int | None, str]:
    path = tuple(error.absolute_path)
    reason = error.message
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(str(k) for k in error.instance if k not in allowed)
        if extra:
            path = (*path, extra[0])
            reason = f"unknown field {extra[0]!r} at {_dotted(path[:-1])}"
    else:
        reason = f"{_dotted(path)}: {reason}"
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path), reason


def _dotted(path: Sequence[Any]) -> str:
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
    return text.lstrip(".") or "(document)"


def parse_policy(text: str, *, source: str = "policy.yaml", now: datetime | None = None) -> Policy:
    """Validate a policy's YAML text.

    ``now`` (injected; publish passes the clock) refuses exceptions already past their
    expiry: publishing an expired waiver is a mistake, not a policy. Evaluation never
    uses the clock, only the export's ``generatedAt``.

    Raises:
        InputError: bad YAML, duplicate key, schema violation or expired exception,
            with ``details`` ``{file, line, reason}``.
    """
    if len(text.encode()) > MAX_POLICY_BYTES:
        raise _fail(source, None, f"policy larger than {MAX_POLICY_BYTES} bytes")
    try:
        node = yaml.compose(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise _fail(source, line, f"not valid YAML: {getattr(exc, 'problem', None) or exc}") from exc
    if node is None:
        raise _fail(source, None, "the policy is empty")
    lines: dict[tuple[Any, ...], int] = {}
    _positions(node, (), lines, source)
    loader = _Loader("")
    try:
        document = loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise _fail(source, None, f"not valid YAML: {exc}") from exc
    finally:
        loader.dispose()
    validator = jsonschema.Draft202012Validator(
        policy_schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    errors = sorted(
        validator.iter_errors(document), key=lambda e: (list(map(str, e.absolute_path)), e.message)
    )
    if errors:
        line, reason = _line_of(errors[0], lines)
        raise _fail(source, line, reason)
    return _typed(document, lines, source, now)


def load_policy(path: str, *, now: datetime | None = None) -> Policy:
    """:func:`parse_policy` of a file (errors name the file)."""
    try:
        raw = read_user_file(path, "policy file", limit=MAX_POLICY_BYTES + 1)
    except StellaError as exc:
        raise _fail(path, None, f"cannot read: {exc.message}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(path, None, "not UTF-8 text") from exc
    return parse_policy(text, source=path, now=now)


def _conditions(value: Mapping[str, Any]) -> Conditions:
    def strings(key: str) -> tuple[str, ...]:
        return tuple(value.get(key, ()))

    severity, cvss, age = value.get("severity", {}), value.get("cvss", {}), value.get("advisoryAgeDays", {})
    return Conditions(
        severity_at_least=severity.get("atLeast"),
        severity_below=severity.get("below"),
        cvss_at_least=None if cvss.get("atLeast") is None else float(cvss["atLeast"]),
        cvss_below=None if cvss.get("below") is None else float(cvss["below"]),
        fix_available=value.get("fixAvailable"),
        vex_status=strings("vexStatus"),
        justification=strings("justification"),
        vex_conflict=value.get("vexConflict"),
        ecosystems=strings("ecosystems"),
        packages=strings("packages"),
        purls=strings("purls"),
        ids=strings("ids"),
        age_at_least=age.get("atLeast"),
        age_below=age.get("below"),
    )


def _typed(
    document: dict[str, Any], lines: Mapping[tuple[Any, ...], int], source: str, now: datetime | None
) -> Policy:
    rules = tuple(Rule(r["id"], r["verdict"], _conditions(r.get("when", {}))) for r in document["rules"])
    exceptions: list[Exception_] = []
    for index, item in enumerate(document.get("exceptions", [])):
        line = lines.get(("exceptions", index, "expires"))
        try:
            expires = normalize_time(item["expires"], field=f"exceptions[{index}].expires")
        except InputError as exc:
            raise _fail(source, line, exc.message) from exc
        assert expires is not None
        if now is not None and datetime.fromisoformat(expires) <= now:
            raise _fail(source, line, f"exception {item['id']!r} expired at {expires}")
        exceptions.append(
            Exception_(
                item["id"],
                item["owner"],
                item["reason"],
                expires,
                item.get("verdict", "pass"),
                _conditions(item["match"]),
            )
        )
    groups: tuple[tuple[str, Sequence[Rule | Exception_]], ...] = (("rule", rules), ("exception", exceptions))
    for kind, items in groups:
        seen: set[str] = set()
        for index, entry in enumerate(items):
            if entry.id in seen:
                plural = "rules" if kind == "rule" else "exceptions"
                raise _fail(source, lines.get((plural, index, "id")), f"{kind} id {entry.id!r} is used twice")
            seen.add(entry.id)
    return Policy(
        name=document["metadata"]["name"],
        default_verdict=document.get("defaultVerdict", "pass"),
        rules=rules,
        exceptions=tuple(exceptions),
        document=document,
    )
