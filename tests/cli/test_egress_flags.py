"""The egress flags are one set: every command that sends bundles out parses them the same way."""

from __future__ import annotations

import argparse

import pytest

from stella.cli import build_parser
from stella.cli.egress_flags import egress_from_args
from stella.errors import EgressDeniedError, UsageError
from stella.targets.egress import ALLOWLIST_ENV
from stella.targets.oci import PASSWORD_ENV

_COMMANDS = {
    "export run": ["export", "run", "--tenant", "acme", "--profile", "json:raw"],
    "export publish": ["export", "publish", "bundle", "--target", "file:///tmp/x"],
    "export push": ["export", "push", "bundle", "--to", "127.0.0.1:5000/db"],
    "schedule tick": ["export", "schedule", "tick"],
}
_FLAGS = ["--allow-host", "registry.example:443", "--allow-plain-http", "--username", "robot"]


@pytest.mark.parametrize("command", sorted(_COMMANDS))
def test_each_command_builds_the_same_policy(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOWLIST_ENV, "mirror.example")
    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    args = build_parser().parse_args([*_COMMANDS[command], *_FLAGS])
    egress = egress_from_args(args)
    egress.policy.check("registry.example", 443)
    egress.policy.check("mirror.example", None)  # the environment's entries join the flags'
    with pytest.raises(EgressDeniedError, match="elsewhere.example"):
        egress.policy.check("elsewhere.example", 443)
    assert egress.policy.plain_http_ok("registry.example")
    assert egress.credentials == ("robot", "s3cret")


@pytest.mark.parametrize("command", ["export run", "export publish", "schedule tick"])
def test_retries_below_one_is_a_usage_error_everywhere(command: str) -> None:
    args = build_parser().parse_args([*_COMMANDS[command], "--retries", "0"])
    with pytest.raises(UsageError, match="--retries"):
        egress_from_args(args)


def test_push_has_no_retries_and_tries_once() -> None:
    args: argparse.Namespace = build_parser().parse_args(_COMMANDS["export push"])
    assert not hasattr(args, "retries") and egress_from_args(args).retries == 1
