"""Apache Airflow DAGs for stored schedules: one DAG per cron or one-off schedule.

Sites that already run Airflow can let it fire our schedules instead of ``stella export
schedule tick``. Airflow and Beam cannot share a virtualenv (their pins clash), so this
module has two halves that meet through files, never through imports:

* In the project's environment, ``python -m runners.airflow DAGS_FOLDER --store URL …``
  reads the schedules from the run store and writes into Airflow's dags folder a
  snapshot (``stella_schedules.json``: the schedules and how to launch them) and a small
  DAG file (``stella_export_dags.py``), each by atomic rename.
* In Airflow's environment, that DAG file loads *this file by path* (the ``runners``
  package imports Beam; this module imports only the standard library at the top, and
  Airflow inside :func:`build_dags`) and builds the DAGs from the snapshot. Parsing
  touches neither the store nor the network, as Airflow's guidance on top-level code asks.

Each DAG has one task that runs the project's own ``stella`` console script by path:
``stella export schedule run-now NAME --tenant T --slot <logical date>``. The run uses the
schedule as stored at launch time (selectors, profile options, targets, egress checks),
and claims the slot under the key the embedded scheduler derives for it, so a slot fires
once even if ``tick`` runs too, and its outcome is recorded where ``schedule list``, the
API and the Console show it. Re-run the writer after creating, pausing or deleting a
schedule (docs/schedules.md).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

__all__ = [
    "DAG_FILE",
    "SNAPSHOT",
    "DagSpec",
    "build_dags",
    "dag_id",
    "dag_specs",
    "main",
    "snapshot",
    "write_folder",
]

SNAPSHOT = "stella_schedules.json"
DAG_FILE = "stella_export_dags.py"
_FORMAT = 1
# The embedded scheduler counts a slot fired within this of its instant as on time (planning.DEFAULT_GRACE).
_GRACE = timedelta(seconds=60)
_DAG_SOURCE = '''"""Stella Export Center schedules as Apache Airflow DAGs.

Written by `python -m runners.airflow`; re-run it rather than editing this file.
"""

import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location("stella_airflow_factory", {module!r})
_factory = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _factory
_spec.loader.exec_module(_factory)
globals().update(_factory.build_dags(Path(__file__).with_name({snapshot!r})))
'''


@dataclass(frozen=True, slots=True)
class DagSpec:
    """One schedule as an Airflow DAG, in plain values (no Airflow types) so it is testable anywhere."""

    dag_id: str
    description: str
    command: tuple[str, ...]  # without the slot, which Airflow renders per run
    env: tuple[tuple[str, str], ...]
    timezone: str
    cron: str | None = None
    at: str | None = None
    catch_up: str = "once"
    paused: bool = False

    @property
    def run_immediately(self) -> bool | timedelta:
        """The catch-up policy in Airflow's terms (``catchup`` is always off, see docs/schedules.md).

        ``once`` runs the newest missed slot when the scheduler comes back; ``skip`` only a
        slot still within the grace the embedded scheduler allows.
        """
        return True if self.catch_up == "once" else _GRACE

    def bash_command(self) -> str:
        """The task's shell line: the quoted command, then ``--slot`` from the run's logical date.

        The quoted part is wrapped in ``raw`` so that no path is ever read as a template.
        """
        quoted = "{% raw %}" + shlex.join(self.command) + "{% endraw %}"
        return quoted + "{% if logical_date %} --slot {{ logical_date | ts }}{% endif %}"


def dag_id(tenant: str, name: str) -> str:
    return f"stella.{tenant}.{name}"


def dag_specs(document: Mapping[str, Any]) -> list[DagSpec]:
    """The DAGs a snapshot describes; event-triggered schedules have no Airflow slot and get none.

    Raises:
        ValueError: a snapshot of another format (written by another version of this module).
    """
    if document.get("format") != _FORMAT:
        raise ValueError(f"snapshot format {document.get('format')!r}: expected {_FORMAT}; re-run the writer")
    launch = [str(arg) for arg in document["launch"]]
    env = tuple(sorted((str(k), str(v)) for k, v in document["env"].items()))
    specs = []
    for schedule in document["schedules"]:
        trigger = schedule["trigger"]
        if trigger["type"] not in ("cron", "once"):
            continue
        tenant, name = schedule["tenant"], schedule["name"]
        command = (
            str(document["stella"]),
            "export",
            "schedule",
            "run-now",
            name,
            "--tenant",
            tenant,
            *launch,
        )
        specs.append(
            DagSpec(
                dag_id=dag_id(tenant, name),
                description=f"stella export {schedule['profile']} for {tenant}: schedule {name}",
                command=command,
                env=env,
                timezone=str(trigger.get("timezone", "UTC")),
                cron=trigger.get("cron"),
                at=trigger.get("at"),
                catch_up=str(schedule.get("catchUp", "once")),
                paused=bool(schedule.get("paused", False)),
            )
        )
    return specs


def build_dags(snapshot_path: Path) -> dict[str, Any]:
    """Airflow DAG objects for a snapshot, by DAG id (the DAG file puts them in its globals)."""
    import pendulum
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG, CronTriggerTimetable

    dags: dict[str, Any] = {}
    for spec in dag_specs(json.loads(snapshot_path.read_text(encoding="utf-8"))):
        # A one-off is Airflow's "@once" starting at its instant (EventsTimetable would fit, but
        # Airflow 3.3.2 cannot deserialize it: KeyError '_summary').
        schedule: Any = "@once"
        start = pendulum.datetime(2000, 1, 1, tz=spec.timezone)
        if spec.cron is not None:
            schedule = CronTriggerTimetable(
                spec.cron, timezone=spec.timezone, run_immediately=spec.run_immediately
            )
        else:
            start = pendulum.parse(str(spec.at))
        with DAG(
            spec.dag_id,
            description=spec.description,
            schedule=schedule,
            start_date=start,
            catchup=False,
            max_active_runs=1,
            is_paused_upon_creation=spec.paused,
            tags=["stella-export"],
        ) as dag:
            BashOperator(
                task_id="export",
                bash_command=spec.bash_command(),
                env=dict(spec.env),
                append_env=True,
                skip_on_exit_code=None,
                retries=0,  # targets are retried inside the run; a fired slot is never re-claimed
            )
        dags[spec.dag_id] = dag
    return dags


def snapshot(
    schedules: Sequence[Mapping[str, Any]], *, stella: str, store_url: str, launch: Sequence[str]
) -> dict[str, Any]:
    """What the DAG file needs: schedules as stored, the console script, launch flags, environment.

    The store URL goes in the task's environment (``STELLA_STORE_URL``), not on its command
    line, so it is not in the process list.
    """
    return {
        "format": _FORMAT,
        "stella": stella,
        "launch": list(launch),
        "env": {"STELLA_STORE_URL": store_url},
        "schedules": [dict(s) for s in schedules],
    }


def write_folder(folder: Path, document: Mapping[str, Any]) -> list[Path]:
    """Write the snapshot, then the DAG file, each complete or absent (atomic rename)."""
    from stella.storage import atomic_local

    written = []
    module = str(Path(__file__).resolve())
    for name, text in (
        (SNAPSHOT, json.dumps(document, indent=2, sort_keys=True) + "\n"),
        (DAG_FILE, _DAG_SOURCE.format(module=module, snapshot=SNAPSHOT)),
    ):
        with atomic_local(folder / name) as stream:
            stream.write(text.encode("utf-8"))
        written.append(folder / name)
    return written


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runners.airflow",
        description="Write Airflow DAGs (one per cron or one-off schedule) into a dags folder.",
    )
    parser.add_argument("dags_folder", metavar="DAGS_FOLDER", help="Airflow's dags folder")
    parser.add_argument(
        "--store", metavar="URL", help="the run store (default $STELLA_STORE_URL, else the service's)"
    )
    parser.add_argument("--tenant", help="only this tenant's schedules (default: all)")
    parser.add_argument("--ledger", help="ledger location the runs read (default $STELLA_HOME/ledger)")
    parser.add_argument(
        "--out", default="bundles", help="folder bundles are published in (default ./bundles)"
    )
    parser.add_argument(
        "--allow-host", action="append", default=[], metavar="HOST[:PORT]|CIDR", help="egress allowlist entry"
    )
    parser.add_argument("--retries", type=int, default=3, metavar="N", help="attempts per target (default 3)")
    parser.add_argument(
        "--sign-key",
        metavar="REF",
        help="key reference the tasks sign with (a path, file://PATH?password-env=VAR or env://VAR: "
        "the reference goes in the DAGs, the secret stays in the task's file or environment)",
    )
    parser.add_argument(
        "--stella",
        default=str(Path(sys.executable).with_name("stella")),
        help="the stella console script the tasks run (default: this environment's)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from stella.cli.common import ledger_root
    from stella.cli.schedule_cmd import default_store, open_store
    from stella.errors import StellaError
    from stella.model import validate_tenant

    args = _parser().parse_args(argv)
    try:
        store_url = args.store or default_store()
        tenant = validate_tenant(args.tenant) if args.tenant else None
        schedules = [s.to_json() for s in open_store(store_url).schedules(tenant)]
        ledger = ledger_root(args.ledger)
        ledger = ledger if "://" in ledger else str(Path(ledger).resolve())
        launch = ["--ledger", ledger, "--out", str(Path(args.out).resolve())]
        launch += ["--retries", str(args.retries)]
        for host in args.allow_host:
            launch += ["--allow-host", host]
        if args.sign_key:
            launch += ["--sign-key", args.sign_key]
        document = snapshot(schedules, stella=args.stella, store_url=store_url, launch=launch)
        written = write_folder(Path(args.dags_folder), document)
    except StellaError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    dags = dag_specs(document)
    print(f"wrote {len(dags)} DAG(s) from {len(schedules)} schedule(s): {', '.join(map(str, written))}")
    for spec in dags:
        print(f"  {spec.dag_id}: {spec.cron or 'once at ' + str(spec.at)} ({spec.timezone})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
