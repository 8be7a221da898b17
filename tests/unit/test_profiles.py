"""The profile registry is the one place a profile lives: CLI, help and docs agree with it."""

from __future__ import annotations

import re

import pytest

from pipelines import export, registry
from pipelines.registry import REGISTRY, builder_for, get_profile
from stella.cli import main
from stella.errors import ProfileUnavailableError, UsageError
from stella.profiles import Profile, ProfileStatus
from tests.support import REPO, check_cli_json


def test_available_exactly_when_built() -> None:
    for name, entry in REGISTRY.items():
        assert entry.profile.name == name
        assert (entry.build is not None) == (entry.profile.status is ProfileStatus.AVAILABLE), name
        if entry.build is not None:
            assert builder_for(name) is entry.build
            assert get_profile(name) is entry.profile
        else:
            with pytest.raises(ProfileUnavailableError):
                builder_for(name)
    assert export.builder_for is builder_for  # run_export compiles through the registry


def test_lookup_errors_name_the_profiles(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="unknown profile 'json:rawx'; profiles: json:raw, "):
        get_profile("json:rawx")
    # Every profile is built today; a planned one (as a new profile starts) is listed but refused.
    planned = registry.ProfileEntry(
        Profile("demo:planned", "demo", "planned", "r1", ProfileStatus.PLANNED, "nothing yet", "nobody")
    )
    monkeypatch.setitem(REGISTRY, "demo:planned", planned)  # type: ignore[index]
    assert get_profile("demo:planned", require_available=False).status is ProfileStatus.PLANNED
    with pytest.raises(ProfileUnavailableError):
        get_profile("demo:planned")


def test_cli_lists_exactly_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "profiles", "--json"]) == 0
    listed = check_cli_json(capsys.readouterr().out)["profiles"]
    assert [p["name"] for p in listed] == list(REGISTRY)
    for item in listed:
        profile = REGISTRY[item["name"]].profile
        assert item["status"] == profile.status.value
        assert item["options"] == [option.to_json() for option in profile.options]
    assert main(["export", "profiles"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [row.split()[0] for row in rows] == list(REGISTRY)


def test_run_help_lists_exactly_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["export", "run", "--help"])
    text = capsys.readouterr().out
    section = text[text.index("profiles (--profile") :]
    assert re.findall(r"^  (\S+) ", section, re.M) == list(REGISTRY)
    for name, entry in REGISTRY.items():
        assert re.search(rf"^  {re.escape(name)} +{entry.profile.status.value} ", section, re.M), name
        for option in entry.profile.options:
            assert f"{option.key}=<{option.type}>" in section and f"(default {option.default})" in section


def test_docs_list_exactly_the_registry() -> None:
    text = (REPO / "docs" / "profiles.md").read_text()
    rows = re.findall(r"^\| `([a-z]+:[a-z-]+)` \| (\w+) \| (.+?) \| (.+?) \|$", text, re.M)
    assert rows == [
        (p.name, p.status.value, p.contents, p.consumer) for p in (e.profile for e in REGISTRY.values())
    ]
    options = re.findall(r"^\| `([a-z]+:[a-z-]+)` \| `([a-z-]+)` \| (.+?) \| (.+?) \| (.+?) \|$", text, re.M)
    assert options == [
        (e.profile.name, o.key, o.type, o.default, o.help)
        for e in REGISTRY.values()
        for o in e.profile.options
    ]
