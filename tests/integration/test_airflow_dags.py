"""Stored schedules as Apache Airflow DAGs, judged by the real Airflow in its own virtualenv.

Airflow's pins clash with Beam's, so the session builds a second virtualenv from PyPI with
the versions frozen in ``runners/airflow-constraints.txt`` (about 1 min wall and 25 s of CPU,
cached under ``$STELLA_TEST_CACHE``). Airflow parses the DAG file without importing Beam or
our package, and ``airflow dags test`` runs one slot on SQLite: the task runs the stella
console script, the bundle it publishes verifies, and the store records the slot under the
key the embedded scheduler uses.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from runners.airflow import DAG_FILE, SNAPSHOT, dag_specs, main
from stella.service.store.schedules import open_schedule_store
from tests.integration.conftest import Ran
from tests.integration.signed_fixtures import Keys
from tests.support import CACHE, REPO, assert_trusted, ingest, require, stella_cli

CONSTRAINTS = REPO / "runners" / "airflow-constraints.txt"
PARSE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.encoders import encode_timetable
def encoded(timetable):  # what Airflow's scheduler runs with, as the DAG serializer stores it
    return {getattr(key, "value", key): value for key, value in encode_timetable(timetable).items()}
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({
    "errors": {path: str(error) for path, error in bag.import_errors.items()},
    "imported": sorted(m for m in sys.modules if m.split(".")[0] in ("apache_beam", "stella", "pipelines")),
    "dags": {
        dag_id: {
            "timetable": encoded(dag.timetable),
            "catchup": dag.catchup,
            "paused": dag.is_paused_upon_creation,
            "start": dag.start_date.isoformat(),
            "tasks": {task.task_id: task.bash_command for task in dag.tasks},
        }
        for dag_id, dag in bag.dags.items()
    },
}, default=str))
"""


def _build(venv: Path) -> bool:
    """A fresh virtualenv with Airflow from PyPI at the frozen versions; False if pip cannot get it."""
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(CONSTRAINTS),
         "apache-airflow", "apache-airflow-providers-standard"],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    if installed.returncode != 0:
        print(installed.stdout[-4000:], installed.stderr[-4000:], file=sys.stderr)
    return installed.returncode == 0


@pytest.fixture(scope="session")
def airflow_python() -> Path:
    """Airflow's own interpreter, built once per constraints file and reused from the cache."""
    digest = hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest()
    venv = CACHE / "airflow-venv"
    marker = venv / ".stella-constraints"  # written last: a half-built venv is rebuilt
    if not (marker.is_file() and marker.read_text() == digest):
        require(
            _build(venv), "Apache Airflow from PyPI in its own virtualenv (runners/airflow-constraints.txt)"
        )
        marker.write_text(digest)
    return venv / "bin" / "python"


def _airflow_env(home: Path, dags: Path, python: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        PATH=f"{python.parent}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


@pytest.mark.slow
def test_airflow_parses_the_schedules_and_runs_a_slot_that_publishes_a_verifiable_bundle(
    airflow_python: Path, cli: Callable[..., Ran], shared_data: Path, tmp_path: Path
) -> None:
    ledger, dags, share = tmp_path / "ledger", tmp_path / "dags", tmp_path / "share"
    ingest(ledger, shared_data / "vex")
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    common = ["--tenant", "acme", "--profile", "json:raw", "--store", store]
    cli("export", "schedule", "create", "nightly", *common, "--cron", "0 2 * * *", "--timezone",
        "Europe/Paris", "--selector", "kind=vex", "--target", f"file://{share}", check=True)  # fmt: skip
    cli("export", "schedule", "create", "weekly", *common, "--cron", "30 6 * * 1", "--timezone",
        "America/New_York", "--catch-up", "skip", check=True)  # fmt: skip
    cli("export", "schedule", "pause", "weekly", "--tenant", "acme", "--store", store, check=True)
    cli("export", "schedule", "create", "quarter", *common, "--at", "2027-01-01T00:00:00Z", check=True)
    cli("export", "schedule", "create", "on-advisories", *common, "--on", "ingest:advisory", check=True)
    assert (
        main([str(dags), "--store", store, "--ledger", str(ledger), "--out", str(tmp_path / "bundles")]) == 0
    )

    env = _airflow_env(tmp_path / "airflow", dags, airflow_python)
    parsed = subprocess.run(
        [str(airflow_python), "-c", PARSE, str(dags)], env=env, capture_output=True, text=True, timeout=300
    )
    assert parsed.returncode == 0, parsed.stderr[-4000:]
    seen = json.loads(parsed.stdout.splitlines()[-1])
    assert seen["errors"] == {} and seen["imported"] == []  # Airflow's process never imports Beam or us
    # Event-triggered schedules have no slots, so no DAG.
    assert set(seen["dags"]) == {"stella.acme.nightly", "stella.acme.quarter", "stella.acme.weekly"}
    quarter = seen["dags"]["stella.acme.quarter"]["timetable"]  # Airflow's @once, starting at the instant
    assert quarter["__type"] == "airflow.timetables.simple.OnceTimetable"
    assert seen["dags"]["stella.acme.quarter"]["start"] == "2027-01-01T00:00:00+00:00"
    nightly, weekly = seen["dags"]["stella.acme.nightly"], seen["dags"]["stella.acme.weekly"]
    assert nightly["timetable"]["__type"] == "airflow.timetables.trigger.CronTriggerTimetable"
    assert nightly["timetable"]["__var"] == {
        "expression": "0 2 * * *", "timezone": "Europe/Paris", "interval": 0.0, "run_immediately": True
    }  # fmt: skip
    assert weekly["timetable"]["__var"]["timezone"] == "America/New_York"
    assert weekly["timetable"]["__var"]["run_immediately"] == 60.0  # skip: only a slot within the grace
    assert (nightly["catchup"], nightly["paused"], weekly["catchup"], weekly["paused"]) == (
        False,
        False,
        False,
        True,
    )
    assert "run-now nightly --tenant acme" in nightly["tasks"]["export"]

    subprocess.run(["airflow", "db", "migrate"], env=env, capture_output=True, check=True, timeout=600)
    slot = "2026-12-06T01:00:00+00:00"  # 02:00 in Paris
    tested = subprocess.run(
        ["airflow", "dags", "test", "stella.acme.nightly", slot],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert tested.returncode == 0 and "state=success" in tested.stdout + tested.stderr, tested.stderr[-4000:]

    schedules = open_schedule_store(store)
    fire = schedules.fire("acme", "nightly", "cron:2026-12-06T01:00:00Z")
    assert fire.status == "succeeded" and fire.instance.startswith("cli@") and fire.late
    bundle = Path(fire.result["bundle"])
    (target,) = fire.result["targets"]
    assert target["status"] == "published"
    for published in (bundle, share / bundle.name):
        verified = json.loads(stella_cli("export", "verify", str(published), "--json", check=True).stdout)
        assert verified["ok"] and verified["exportId"] == bundle.name and not verified["mismatches"]
    manifest = json.loads((bundle / "export.json").read_bytes())
    assert manifest["tenant"] == "acme" and manifest["profile"]["name"] == "json:raw"
    assert "vex" in json.dumps(manifest["selectors"])
    assert (dags / DAG_FILE).is_file() and schedules.fires("acme", "weekly") == []
    # The slot is spent: a second launch of it (a retry, or tick beside Airflow) is refused, not re-run.
    again = cli("export", "schedule", "run-now", "nightly", "--tenant", "acme", "--store", store,
                "--slot", slot, "--json")  # fmt: skip
    assert again.returncode == 2 and "already fired by cli@" in again.stdout, again.stdout + again.stderr
    assert len(schedules.fires("acme", "nightly")) == 1


def test_a_dag_task_signs_with_the_key_reference_the_writer_was_given(
    cli: Callable[..., Ran], signing_keys: Keys, shared_data: Path, tmp_path: Path
) -> None:
    """The task's own command line (what Airflow's BashOperator runs), key PEM in its environment."""
    ledger, dags = tmp_path / "ledger", tmp_path / "dags"
    ingest(ledger, shared_data / "vex")
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    cli("export", "schedule", "create", "nightly", "--tenant", "acme", "--profile", "json:raw",
        "--store", store, "--cron", "0 2 * * *", "--sign", check=True)  # fmt: skip
    ref = "env://STELLA_TEST_KEY_PEM"
    assert main([str(dags), "--store", store, "--ledger", str(ledger), "--out", str(tmp_path / "out"),
                 "--sign-key", ref]) == 0  # fmt: skip
    (spec,) = dag_specs(json.loads((dags / SNAPSHOT).read_text()))
    assert spec.command[-2:] == ("--sign-key", ref) and "PRIVATE KEY" not in (dags / SNAPSHOT).read_text()
    env = {"STELLA_TEST_KEY_PEM": signing_keys.ec_key.read_text(), **dict(spec.env)}
    ran = cli(*spec.command[1:], "--slot", "2026-12-06T02:00:00Z", "--json", env=env, check=True)
    (fire,) = json.loads(ran.stdout)["fires"]
    assert fire["status"] == "succeeded" and fire["result"]["signedBy"]
    assert_trusted(Path(fire["result"]["bundle"]), signing_keys.ec_pub, tmp_path)
