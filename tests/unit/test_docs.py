"""Docs that match behaviour: the error table and the selector table come from the code."""

from __future__ import annotations

from stella.errors import EXIT_CODES
from stella.selectors import SELECTOR_KEYS
from tests.support import REPO


def test_error_table_matches_code() -> None:
    text = (REPO / "docs" / "errors.md").read_text()
    for spec in EXIT_CODES.values():
        assert f"| {spec.exit_code} | `{spec.code}` | {spec.http_status} | {spec.summary} |" in text, (
            spec.code
        )


def test_selector_table_matches_code() -> None:
    text = (REPO / "docs" / "selectors.md").read_text()
    for key, (_attr, description) in SELECTOR_KEYS.items():
        assert f"| `{key}` | {description} |" in text, key


def test_readme_starts_with_the_two_commands() -> None:
    lines = [line for line in (REPO / "README.md").read_text().splitlines() if line.strip()]
    assert lines[1] == "```bash"
    assert lines[2].startswith("./bootstrap.sh demo")
    assert lines[3].startswith("./bootstrap.sh test")
    assert lines[4] == "```"
    assert (REPO / ".ci" / "run").read_text().strip().endswith('bootstrap.sh" test')
