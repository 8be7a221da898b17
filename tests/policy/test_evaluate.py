"""Policy evaluation, one condition at a time, on hand-made facts."""

from __future__ import annotations

from dataclasses import replace

import pytest

from stella.policy.evaluate import FindingFacts, evaluate
from stella.policy.language import parse_policy

FACTS = FindingFacts(
    vulnerability_id="CVE-2099-1",
    aliases=("GHSA-x",),
    ecosystem="npm",
    package="@scope/left-pad",
    purl="pkg:npm/%40scope/left-pad@1.0.0",
    levels=("medium", "high"),
    cvss_scores=(6.1, 7.5),
    fix_available=True,
    vex_status="affected",
    justification=None,
    vex_conflict=False,
    published="2026-01-01T00:00:00Z",
)
AS_OF = "2026-04-11T00:00:00Z"  # 100 days after publication


def _verdict(when: str, facts: FindingFacts = FACTS) -> str:
    text = (
        "apiVersion: stella.policy/v1\nkind: Policy\nmetadata: {name: tt}\ndefaultVerdict: pass\n"
        f"rules: [{{id: r, verdict: fail, when: {when}}}]\n"
    )
    return evaluate(parse_policy(text), facts, AS_OF).value


@pytest.mark.parametrize(
    ("when", "holds"),
    [
        ("{severity: {atLeast: high}}", True),  # the highest stated level counts
        ("{severity: {atLeast: critical}}", False),
        ("{severity: {below: critical}}", True),
        ("{cvss: {atLeast: 7.5}}", True),
        ("{cvss: {atLeast: 7.6}}", False),
        ("{cvss: {below: 7.5}}", False),
        ("{fixAvailable: false}", False),
        ("{vexStatus: [affected, under_investigation]}", True),
        ("{justification: [component_not_present]}", False),
        ("{vexConflict: false}", True),
        ("{ecosystems: [NPM]}", True),  # ecosystem names compare case-insensitively
        ("{packages: ['@scope/*']}", True),
        ("{packages: ['left-pad']}", False),
        ("{purls: ['pkg:npm/*']}", True),
        ("{ids: [GHSA-x]}", True),  # an alias is enough
        ("{ids: [CVE-2099-2]}", False),
        ("{advisoryAgeDays: {atLeast: 100}}", True),
        ("{advisoryAgeDays: {atLeast: 101}}", False),
        ("{advisoryAgeDays: {below: 100}}", False),
        ("{severity: {atLeast: high}, fixAvailable: false}", False),  # conditions AND
        ("{}", True),  # no condition: always
    ],
)
def test_each_condition(when: str, holds: bool) -> None:
    assert _verdict(when) == ("fail" if holds else "pass")


def test_missing_facts_never_satisfy_a_threshold() -> None:
    bare = replace(FACTS, levels=(), cvss_scores=(), published=None)
    for when in ("{severity: {below: low}}", "{cvss: {below: 1}}", "{advisoryAgeDays: {below: 1000}}"):
        assert _verdict(when, bare) == "pass"


def test_first_rule_decides_and_exceptions_expire_at_as_of() -> None:
    text = """\
apiVersion: stella.policy/v1
kind: Policy
metadata: {name: tt}
rules:
  - {id: first, verdict: warn, when: {ids: [CVE-2099-1]}}
  - {id: second, verdict: fail}
exceptions:
  - {id: E1, owner: o, reason: r, expires: "2026-04-11T00:00:00Z", match: {ids: [CVE-2099-1]}}
  - {id: E2, owner: o, reason: r, expires: "2026-04-11T00:00:01Z", verdict: fail, match: {packages: ["*"]}}
"""
    policy = parse_policy(text)
    verdict = evaluate(policy, FACTS, AS_OF)  # E1 expires exactly at AS_OF: expired
    assert (verdict.value, verdict.rule, verdict.exception, verdict.expired_exceptions) == (
        "fail",
        "first",
        "E2",
        ("E1",),
    )
    later = evaluate(policy, FACTS, "2026-05-01T00:00:00Z")
    assert (later.value, later.rule, later.exception, later.expired_exceptions) == (
        "warn",
        "first",
        None,
        ("E1", "E2"),
    )
    other = evaluate(
        policy, replace(FACTS, vulnerability_id="CVE-2099-9", aliases=()), "2026-01-01T00:00:00Z"
    )
    assert (other.value, other.rule, other.exception) == ("fail", "second", "E2")
