"""The policy language: what publish accepts, and the file/line/reason of what it refuses."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stella.errors import InputError, PolicySnapshotNotFoundError, PolicySnapshotRequiredError, UsageError
from stella.policy.language import parse_policy
from stella.policy.snapshot import SnapshotStore, canonical_snapshot, parse_snapshot_id
from tests.support import check_cli_json, stella_cli

NOW = datetime(2026, 12, 1, tzinfo=UTC)

POLICY = """\
apiVersion: stella.policy/v1
kind: Policy
metadata:
  name: baseline
rules:
  - id: vex-cleared
    verdict: pass
    when:
      vexStatus: [not_affected, fixed]
  - id: critical
    verdict: fail
    when:
      severity: {atLeast: critical}
exceptions:
  - id: EXC-1
    owner: alice@example.com
    reason: accepted until the vendor ships a fix
    expires: 2027-06-30T00:00:00+02:00
    match:
      ids: [CVE-2021-44228]
"""


def _refusal(text: str) -> InputError:
    with pytest.raises(InputError) as caught:
        parse_policy(text, source="p.yaml", now=NOW)
    return caught.value


def test_a_valid_policy_becomes_typed_rules_and_a_stable_snapshot() -> None:
    policy = parse_policy(POLICY, source="p.yaml", now=NOW)
    assert [r.id for r in policy.rules] == ["vex-cleared", "critical"]
    assert policy.default_verdict == "pass"
    assert policy.exceptions[0].expires == "2027-06-29T22:00:00Z"
    snapshot = canonical_snapshot(policy)
    # Another spelling of the same policy (flow style, comments, key order) is the same snapshot.
    respelled = (
        "# comment\nkind: Policy\napiVersion: stella.policy/v1\nmetadata: {name: baseline}\n"
        "defaultVerdict: pass\n"
        "rules: [{verdict: pass, id: vex-cleared, when: {vexStatus: [not_affected, fixed]}},"
        " {id: critical, verdict: fail, when: {severity: {atLeast: critical}}}]\n"
        "exceptions: [{id: EXC-1, owner: alice@example.com, reason: accepted until the vendor ships a fix,"
        " expires: '2027-06-29T22:00:00Z', verdict: pass, match: {ids: [CVE-2021-44228]}}]\n"
    )
    again = canonical_snapshot(parse_policy(respelled, now=NOW))
    assert (again.id, again.canonical) == (snapshot.id, snapshot.canonical)
    assert json.loads(snapshot.canonical)["exceptions"][0]["verdict"] == "pass"
    changed = canonical_snapshot(parse_policy(POLICY.replace("verdict: fail", "verdict: warn"), now=NOW))
    assert changed.id != snapshot.id


@pytest.mark.parametrize(
    ("edit", "line", "reason"),
    [
        (
            ("    owner: alice", "    owner: bob\n    owner: alice"),
            17,
            "duplicate key 'owner' (first given on line 16)",
        ),
        (("severity: {atLeast: critical}", "severity: {atleast: critical}"), 13, "unknown field 'atleast'"),
        (("metadata:", "metadata:\n  labels: {}"), 4, "unknown field 'labels' at metadata"),
        (("verdict: fail", "verdict: 3"), 11, "rules[1].verdict: 3 is not one of"),
        (("verdict: fail", "verdict: block"), 11, "rules[1].verdict: 'block' is not one of"),
        (
            ("expires: 2027-06-30T00:00:00+02:00", "expires: 2026-11-30T00:00:00Z"),
            18,
            "exception 'EXC-1' expired",
        ),
        (("expires: 2027-06-30T00:00:00+02:00", "expires: soon"), 18, "is not an RFC 3339 timestamp"),
        (("  - id: critical", "  - id: vex-cleared"), 10, "rule id 'vex-cleared' is used twice"),
        (("verdict: fail", "verdict: fail: now"), 11, "not valid YAML: mapping values are not allowed"),
        (("kind: Policy", "kind: Policies"), 2, "kind: 'Policy' was expected"),
    ],
)
def test_a_malformed_policy_is_refused_with_file_line_and_reason(
    edit: tuple[str, str], line: int, reason: str
) -> None:
    assert edit[0] in POLICY
    error = _refusal(POLICY.replace(edit[0], edit[1], 1))
    assert error.details["file"] == "p.yaml"
    assert error.details["line"] == line, error.message
    assert reason in error.details["reason"], error.message
    assert error.message.startswith(f"p.yaml:{line}: ")


def test_yaml_dates_stay_strings_and_empty_or_huge_policies_are_refused() -> None:
    # A bare date is a string to the validator (YAML 1.1 would make it a date object).
    policy = parse_policy(POLICY.replace("2027-06-30T00:00:00+02:00", "2027-06-30"), now=NOW)
    assert policy.exceptions[0].expires == "2027-06-30T00:00:00Z"
    assert "empty" in _refusal("").message
    assert "required property" in _refusal("apiVersion: stella.policy/v1\n").message
    assert "larger than" in _refusal("#" * (5 * 1024 * 1024)).message


def test_store_is_per_tenant_and_ids_are_checked(tmp_path: Path) -> None:
    store = SnapshotStore(str(tmp_path))
    snapshot = canonical_snapshot(parse_policy(POLICY, now=NOW))
    path, created = store.publish("acme", snapshot)
    assert created and Path(path).read_bytes() == snapshot.canonical
    assert store.publish("acme", snapshot)[1] is False
    assert store.load("acme", snapshot.id).canonical == snapshot.canonical
    assert [s.id for s in store.list("acme")] == [snapshot.id]
    assert store.list("other") == []
    with pytest.raises(PolicySnapshotNotFoundError):
        store.load("other", snapshot.id)
    with pytest.raises(PolicySnapshotRequiredError):
        parse_snapshot_id(None)
    for bad in ("sha256:" + "A" * 64, "../../etc", "sha256:" + "0" * 63):
        with pytest.raises(UsageError):
            parse_snapshot_id(bad)
    Path(path).write_bytes(snapshot.canonical.replace(b"baseline", b"baseline-x"))
    with pytest.raises(InputError, match="does not match its name"):
        store.load("acme", snapshot.id)


def test_cli_publish_and_list(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    ledger = str(tmp_path / "ledger")
    published = stella_cli(
        "policy", "publish", str(policy), "--tenant", "acme", "--ledger", ledger, check=True
    )
    snapshot_id = published.stdout.strip()
    assert snapshot_id == canonical_snapshot(parse_policy(POLICY)).id
    listed = check_cli_json(
        stella_cli("policy", "list", "--tenant", "acme", "--ledger", ledger, "--json", check=True).stdout
    )["snapshots"]
    assert [row["snapshotId"] for row in listed] == [snapshot_id]
    assert listed[0]["nextExpiry"] == "2027-06-29T22:00:00Z"
    policy.write_text(POLICY.replace("  name: baseline", "  name: baseline\n  name: again"))
    refused = stella_cli("policy", "publish", str(policy), "--tenant", "acme", "--ledger", ledger)
    assert refused.returncode == 7
    assert f"{policy}:5: duplicate key 'name'" in refused.stderr
