"""Shared test helpers: where the shared data lies and how real components are required.

CI sets ``CI=true``; there a missing real component (Trivy, boltchk, age, SoftHSM2, the
registry, the GCS emulator) is a failure, not a skip, because a skipped peer check
proves nothing.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STELLA_SHARED", REPO.parent / "shared")).resolve()
DATA = SHARED / "data"
TOOLS = SHARED / "tools"
CACHE = Path(os.environ.get("STELLA_TEST_CACHE", REPO / ".cache")).resolve()
VENV_BIN = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin"


_CLI_LOGGERS = ("stella", "transforms", "pipelines", "runners", "uvicorn", "uvicorn.error", "uvicorn.access")


@contextlib.contextmanager
def preserved_logging() -> Iterator[None]:
    """Undo what an in-process ``stella.cli.main`` does to logging (handlers bound to a test's
    captured stderr, levels), so one test's CLI call cannot change what the next one logs."""
    loggers = [logging.getLogger(name) for name in _CLI_LOGGERS]
    saved = [(lg, list(lg.handlers), lg.level, lg.propagate, lg.disabled) for lg in loggers]
    try:
        yield
    finally:
        for logger, handlers, level, propagate, disabled in saved:
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate, logger.disabled = propagate, disabled


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(condition: bool, what: str) -> None:
    """Skip locally, fail in CI, when a real component the test needs is missing."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"required component missing in CI: {what}")
    pytest.skip(f"component missing: {what}")


def require_tool(name: str) -> str:
    """Path of an executable on PATH or in the venv, or skip/fail per :func:`require`."""
    found = shutil.which(name) or (str(VENV_BIN / name) if (VENV_BIN / name).exists() else None)
    require(found is not None, f"executable {name!r}")
    assert found is not None
    return found


def offline_test_pipeline(*extra_args: str) -> object:
    """A TestPipeline on the offline runner (the default DirectRunner would try to download Prism)."""
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.testing.test_pipeline import TestPipeline

    from runners.options import runner_args

    return TestPipeline(options=PipelineOptions(runner_args(list(extra_args))), blocking=True)


def tree_digests(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under root (for byte-identity checks)."""
    import hashlib

    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def stella_cli(
    *args: str, env: dict[str, str] | None = None, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``stella`` console script as a user would."""
    import subprocess

    full_env = {**os.environ, **(env or {})}
    result = subprocess.run(
        [str(VENV_BIN / "stella"), *args], capture_output=True, text=True, env=full_env, timeout=900
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"stella {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def stella_in_process(
    *args: str, env: dict[str, str] | None = None, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """``stella`` through the console script's own ``main`` in this process, shaped like
    :func:`stella_cli`'s result: no interpreter and no Beam import per call (about a second
    of CPU each), for tests that make many calls; ``env`` is set for the call only."""
    import io
    from unittest import mock

    from stella.cli import main

    out, err = io.StringIO(), io.StringIO()
    with (
        mock.patch.dict(os.environ, env or {}),
        preserved_logging(),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        code = main(list(args))
    if check and code != 0:
        raise AssertionError(f"stella {' '.join(args)} failed ({code}):\n{out.getvalue()}\n{err.getvalue()}")
    return subprocess.CompletedProcess(["stella", *args], code, out.getvalue(), err.getvalue())


CLI_SCHEMAS = REPO / "schemas" / "cli"


def cli_schema_name(command: str) -> str:
    """``"ledger quarantine ls"`` -> ``ledger-quarantine-ls.schema.json``."""
    return command.replace(" ", "-") + ".schema.json"


def check_cli_json(stdout: str) -> dict[str, Any]:
    """Parse a ``--json`` output and validate it against its command's schema (docs/cli.md)."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    value: dict[str, Any] = json.loads(stdout)
    assert isinstance(value, dict), "the --json output is an object"
    registry: Registry[Any] = Registry().with_resources(
        (
            f"https://stellaops.example/schemas/cli/{path.name}",
            Resource.from_contents(json.loads(path.read_text())),
        )
        for path in CLI_SCHEMAS.glob("*.schema.json")
    )
    name = cli_schema_name(value["command"]) if value.get("command") else "envelope.schema.json"
    schema = json.loads((CLI_SCHEMAS / name).read_text())
    errors = sorted(Draft202012Validator(schema, registry=registry).iter_errors(value), key=str)
    assert not errors, f"{name}: " + "; ".join(e.message for e in errors[:5])
    return value


T0 = "2026-11-27T00:00:00Z"
"""The received-at time tests ingest with, so ledgers (and bundles) are reproducible."""


def ingest(
    ledger: Path | str, *paths: Path | str, tenant: str = "acme", env: dict[str, str] | None = None
) -> dict[str, Any]:
    """``stella ledger ingest`` through the console script; returns its JSON report."""
    result = stella_cli(
        "ledger",
        "ingest",
        "--tenant",
        tenant,
        "--ledger",
        str(ledger),
        "--ingested-at",
        T0,
        "--json",
        *map(str, paths),
        env=env,
        check=True,
    )
    return check_cli_json(result.stdout)


PASS_ALL_POLICY = "apiVersion: stella.policy/v1\nkind: Policy\nmetadata: {name: pass-all}\nrules: [{id: all, verdict: pass}]\n"
"""The policy every-profile tests pin for json:policy (findings are evaluated, all pass)."""


def profile_options(
    profile: str, ledger: Path | str, *, tenant: str = "acme", env: dict[str, str] | None = None
) -> tuple[str, ...]:
    """The ``--option`` arguments a profile cannot run without, set up in ``ledger``.

    json:policy pins a policy snapshot: :data:`PASS_ALL_POLICY` is published with
    ``stella policy publish`` (idempotent) and its id returned as the option.
    """
    if profile != "json:policy":
        return ()
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "policy.yaml"
        path.write_text(PASS_ALL_POLICY)
        result = stella_cli(
            "policy",
            "publish",
            str(path),
            "--tenant",
            tenant,
            "--ledger",
            str(ledger),
            "--json",
            env=env,
            check=True,
        )
    return ("--option", f"policy-snapshot={json.loads(result.stdout)['snapshotId']}")


def run_args(
    ledger: Path | str, out: Path | str, *, tenant: str = "acme", profile: str = "json:raw"
) -> tuple[str, ...]:
    """The arguments of ``stella export run`` for one tenant, profile, ledger and output folder."""
    return (
        "export",
        "run",
        "--tenant",
        tenant,
        "--profile",
        profile,
        "--ledger",
        str(ledger),
        "--out",
        str(out),
    )


def export(
    ledger: Path | str,
    out: Path | str,
    *extra: str,
    tenant: str = "acme",
    profile: str = "json:raw",
    env: dict[str, str] | None = None,
) -> Path:
    """``stella export run`` through the console script; returns the published bundle's path.

    A profile's required options (:func:`profile_options`) are added unless ``extra`` gives them.
    """
    if not any(arg.startswith("policy-snapshot=") for arg in extra):
        extra = (*extra, *profile_options(profile, ledger, tenant=tenant, env=env))
    result = stella_cli(
        *run_args(ledger, out, tenant=tenant, profile=profile), "--json", *extra, env=env, check=True
    )
    return Path(check_cli_json(result.stdout)["bundle"])


def assert_trusted(bundle: Path, public: Path, tmp_path: Path) -> None:
    """``stella export verify --key`` says trusted, and openssl verifies the blob signature itself."""
    verified = stella_cli("export", "verify", str(bundle), "--key", str(public), "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["signature"]["status"] == "trusted"
    der = tmp_path / f"{bundle.name}.sig.der"
    der.write_bytes(base64.b64decode((bundle / "signatures" / "export.sig").read_bytes()))
    checked = subprocess.run(
        [require_tool("openssl"), "dgst", "-sha256", "-verify", str(public), "-signature", str(der),
         str(bundle / "export.json")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode == 0 and "Verified OK" in checked.stdout, checked.stdout + checked.stderr


def ledger_rows(text: Any, documents: Any, *, kinds: Sequence[str], list_size: int = 4) -> Any:
    """A hypothesis strategy of ledger rows (the Avro schema's fields, as fastavro decodes them)."""
    from hypothesis import strategies as st

    strings = st.lists(text, max_size=list_size)
    optional = st.none() | text
    return st.fixed_dictionaries(
        {
            "tenant": text, "kind": st.sampled_from(list(kinds)), "format": text, "upstream_id": text,
            "modified": optional, "revision": optional, "source": text, "ingested_at": text, "digest": text,
            "document": documents, "ecosystems": strings, "packages": strings, "purls": strings,
            "aliases": st.lists(text, max_size=list_size * 18), "vex_products": strings,
            "sbom_subject": optional, "withdrawn": optional,
        }
    )  # fmt: skip


def processes_naming(text: str) -> set[int]:
    """The pids of live processes whose command line contains ``text`` (forked workers share the command's)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if text.encode() in command:
                found.add(int(entry.name))
    return found
