"""``stella export schedule create|list|pause|resume|delete|run-now|tick``.

Schedules live in the service's store (``--store URL``, default ``$STELLA_STORE_URL``,
else ``sqlite:///$STELLA_HOME/service/runs.db``), so the CLI and the service see the same ones. ``tick`` is one pass of
the scheduler -- run it from cron or a systemd timer every minute, on as many hosts as
you like: slot keys make sure each slot fires once. The service runs the same scheduler
in its workers. ``stella ledger ingest`` records ingest events in the same store, which
is how ``--on ingest:<kind>`` schedules hear about new evidence.
"""

from __future__ import annotations

import argparse
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stella.bundle.encrypt import parse_encryption
from stella.cli import schedule_remote
from stella.cli.common import ledger_root
from stella.cli.egress_flags import add_egress_arguments, egress_from_args
from stella.errors import UsageError
from stella.model import validate_tenant
from stella.schedules.model import (
    CatchUp,
    CronTrigger,
    OnceTrigger,
    Schedule,
    Trigger,
    format_time,
    parse_event,
    parse_time,
    validate_name,
)
from stella.signers.registry import load_signer
from stella.targets.distribute import RetryPolicy, check_targets, error_for, failed, parse_target
from stella.targets.egress import policy_from

if TYPE_CHECKING:  # imported where used: the store and its metrics cost every `stella` call ~0.03 CPU s
    from stella.schedules.scheduler import Launch, Launcher, Scheduler
    from stella.service.store.schedules import SqlScheduleStore

__all__ = ["default_store", "launcher", "open_store", "register"]

# With --server the token's tenant is used when it has only one (or `stella --tenant T`).
_TENANT_RULE = "required, except with --server and a one-tenant token"


def default_store() -> str:
    """The service's store URL: schedules live beside the runs they launch."""
    from stella.service.config import ServiceConfig

    return ServiceConfig.from_env().store_url


def open_store(url: str | None) -> SqlScheduleStore:
    from stella.service.store.schedules import open_schedule_store

    return open_schedule_store(url or default_store())


def _store_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        metavar="URL",
        help="the service's store: sqlite:///PATH or postgresql://… (default $STELLA_STORE_URL, "
        "else sqlite:///$STELLA_HOME/service/runs.db)",
    )


def _launch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ledger", help="ledger location (default $STELLA_HOME/ledger)")
    parser.add_argument(
        "--out", default="bundles", help="folder bundles are published in (default ./bundles)"
    )
    parser.add_argument(
        "--sign-key",
        metavar="REF",
        help="sign the launched bundles with this key, as export run --sign-key (env://VAR and "
        "?password-env=VAR keep secrets off the command line); a schedule created with --sign "
        "fails its slot without one",
    )
    add_egress_arguments(parser)


def register(commands: Any) -> None:
    schedule = commands.add_parser("schedule", help="scheduled and event-triggered exports")
    actions = schedule.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    create = actions.add_parser(
        "create",
        help="store a schedule: cron, one-off or event trigger, with its targets",
        description="Exactly one of --cron, --at, --on. Targets are checked against the egress "
        "allowlist now (exit 8) and again at every launch.",
    )
    create.add_argument("name", metavar="NAME", help="the schedule's name (2-63 of a-z, 0-9, -)")
    create.add_argument("--tenant", help=f"the tenant the schedule exports ({_TENANT_RULE})")
    create.add_argument("--profile", required=True, help="the export profile (stella export profiles)")
    trigger = create.add_mutually_exclusive_group(required=True)
    trigger.add_argument("--cron", metavar="EXPR", help='five-field cron expression, e.g. "0 2 * * *"')
    trigger.add_argument("--at", metavar="TIME", help="one run at an RFC 3339 time with offset")
    trigger.add_argument("--on", metavar="EVENT", help="ingest:<kind>, ingest:any or webhook")
    create.add_argument(
        "--timezone", default="UTC", help="IANA zone the cron expression is read in (default UTC)"
    )
    create.add_argument(
        "--quiet", type=int, default=30, metavar="S", help="event bursts: fire after S quiet seconds"
    )
    create.add_argument(
        "--max-delay", type=int, default=300, metavar="S", help="event bursts: fire at most S s late"
    )
    create.add_argument(
        "--catch-up",
        choices=[policy.value for policy in CatchUp],
        default=CatchUp.ONCE.value,
        help="slots missed while no scheduler ran: run the newest once (default) or skip them",
    )
    create.add_argument(
        "--selector", action="append", default=[], metavar="KEY=VALUE[,VALUE]", help="as for export run"
    )
    create.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="profile option")
    create.add_argument("--target", action="append", default=[], metavar="URL", help="as for export run")
    create.add_argument(
        "--sign",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="--sign: every slot must be signed (it fails without the launcher's key, never publishes "
        "unsigned); --no-sign: never sign; default: signed when the launcher has a key",
    )
    create.add_argument(
        "--encrypt-to",
        action="append",
        default=[],
        metavar="RECIPIENT",
        help="encrypt each bundle's data/ for this recipient, as for export run (repeatable)",
    )
    create.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="HOST[:PORT]|CIDR",
        help="allowlist entries the targets are checked against now (also $STELLA_EGRESS_ALLOWLIST)",
    )
    _store_argument(create)
    create.set_defaults(handler=_create)

    listing = actions.add_parser("list", help="schedules with their trigger, state and latest runs")
    listing.add_argument("--tenant", help="only this tenant's schedules (default: all)")
    _store_argument(listing)
    listing.set_defaults(handler=_list)

    for action, text in (
        ("pause", "stop firing (slots while paused are never caught up)"),
        ("resume", "fire again from now on"),
        ("delete", "remove the schedule"),
    ):
        command = actions.add_parser(action, help=text)
        command.add_argument("name", metavar="NAME", help="the schedule")
        command.add_argument("--tenant", help=f"the schedule's tenant ({_TENANT_RULE})")
        _store_argument(command)
        command.set_defaults(handler=_change, change=action)

    now = actions.add_parser("run-now", help="launch a schedule's export now and publish it to its targets")
    now.add_argument("name", metavar="NAME", help="the schedule")
    now.add_argument("--tenant", help=f"the schedule's tenant ({_TENANT_RULE})")
    now.add_argument(
        "--slot",
        metavar="TIME",
        help="fire this slot of a cron or one-off schedule (RFC 3339), claimed under the key the "
        "scheduler uses, so it fires once whoever launches it (an Airflow DAG does)",
    )
    _launch_arguments(now)
    _store_argument(now)
    now.set_defaults(handler=_run_now)

    tick = actions.add_parser("tick", help="one scheduler pass: launch every due slot (run it every minute)")
    _launch_arguments(tick)
    _store_argument(tick)
    tick.set_defaults(handler=_tick)


def _tenant(args: argparse.Namespace) -> str:
    """The schedule's tenant: required against the local store (it holds every tenant's)."""
    if not args.tenant:
        raise UsageError(f"export schedule {args.action}: give --tenant T, the schedule's tenant")
    return validate_tenant(args.tenant)


def _trigger(args: argparse.Namespace) -> Trigger:
    if args.cron is not None:
        return CronTrigger(args.cron, args.timezone)
    if args.at is not None:
        return OnceTrigger(parse_time(args.at, "--at"))
    return parse_event(args.on, quiet_seconds=args.quiet, max_delay_seconds=args.max_delay)


def _create(args: argparse.Namespace) -> int:
    schedule = schedule_remote.create(args) if args.server else _create_local(args)
    args.output.result({"schedule": schedule.to_json()})
    if not args.output.json:
        print(f"created schedule {schedule.name} for {schedule.tenant}: {_describe(schedule)}")
    return 0


def _create_local(args: argparse.Namespace) -> Schedule:
    from pipelines.registry import get_profile
    from stella.profiles import parse_profile_options
    from stella.selectors import parse_selectors

    profile = get_profile(args.profile)  # the same checks as export run, at creation time
    parse_selectors(args.selector)
    parse_profile_options(args.option, profile)
    policy = policy_from(args.allow_host, os.environ)
    check_targets([parse_target(url, policy) for url in args.target])
    encrypt_to = tuple(args.encrypt_to)
    parse_encryption(list(encrypt_to), environ=os.environ)
    schedule = Schedule(
        tenant=_tenant(args),
        name=validate_name(args.name),
        profile=profile.name,
        trigger=_trigger(args),
        created_at=datetime.now(UTC),
        selectors=tuple(args.selector),
        options=tuple(args.option),
        targets=tuple(args.target),
        catch_up=CatchUp(args.catch_up),
        sign=args.sign,
        encrypt_to=encrypt_to,
    )
    open_store(args.store).create(schedule)
    return schedule


def _describe(schedule: Schedule) -> str:
    trigger = schedule.trigger
    if isinstance(trigger, CronTrigger):
        text = f"cron {trigger.expression!r} ({trigger.timezone})"
    elif isinstance(trigger, OnceTrigger):
        text = f"once at {format_time(trigger.at)}"
    else:
        text = f"on {trigger.event} (quiet {trigger.quiet_seconds}s, max {trigger.max_delay_seconds}s)"
    targets = ", ".join(schedule.targets) or "local only"
    signing = {True: "signature required", False: "unsigned", None: "signed if a key is given"}
    return f"{schedule.profile}, {text}, targets: {targets}, {signing[schedule.sign]}"


def _list(args: argparse.Namespace) -> int:
    if args.server:
        return _print_schedules(schedule_remote.list_schedules(args), args)
    store = open_store(args.store)
    tenant = validate_tenant(args.tenant) if args.tenant else None
    now = datetime.now(UTC)
    rows = [store.overview(schedule, now) for schedule in store.schedules(tenant)]
    return _print_schedules(rows, args)


def _print_schedules(rows: list[dict[str, Any]], args: argparse.Namespace) -> int:
    """``schedule list``'s output, the same for the local store and a server's API."""
    args.output.result({"schedules": rows})
    if args.output.json:
        return 0
    print(f"{'tenant':<12} {'schedule':<22} {'state':<7} {'next slot':<21} {'last run':<33} trigger")
    for row in rows:
        last = row["fires"][0] if row["fires"] else None
        state = "paused" if row["paused"] else "active"
        last_text = f"{last['status']} {last['slot']}" if last else "-"
        upcoming = row.get("nextSlot") or "-"
        described = _describe(Schedule.from_json(row))
        print(f"{row['tenant']:<12} {row['name']:<22} {state:<7} {upcoming:<21} {last_text:<33} {described}")
    return 0


def _change(args: argparse.Namespace) -> int:
    if args.server:
        tenant = schedule_remote.change(args)
    elif args.change == "delete":
        tenant = _tenant(args)
        open_store(args.store).delete(tenant, args.name)
    else:
        tenant = _tenant(args)
        open_store(args.store).set_paused(tenant, args.name, args.change == "pause", datetime.now(UTC))
    args.output.result({"tenant": tenant, "schedule": args.name, "action": args.change})
    if not args.output.json:
        print(f"schedule {args.name} ({tenant}): {args.change} done")
    return 0


def launcher(args: argparse.Namespace) -> Launcher:
    """Runs a launch in this process: the same path as ``export run --target``."""
    from pipelines.export import export_and_publish
    from pipelines.registry import get_profile
    from stella.bundle.request import new_request

    egress = egress_from_args(args)
    root = ledger_root(args.ledger)
    signer = load_signer(args.sign_key, environ=os.environ) if args.sign_key else None

    def launch(item: Launch) -> dict[str, Any]:
        schedule = item.schedule
        if schedule.sign and signer is None:
            # The slot fails (recorded on the fire) rather than publish an unsigned bundle.
            raise UsageError(
                f"schedule {schedule.name!r} asks for a signature: launch it with --sign-key REF",
                details={"tenant": schedule.tenant, "schedule": schedule.name},
            )
        targets = [
            parse_target(url, egress.policy, credentials=egress.credentials) for url in schedule.targets
        ]
        request = new_request(
            tenant=schedule.tenant,
            profile=get_profile(schedule.profile),
            ledger_root=root,
            out_dir=str(Path(args.out) / schedule.tenant),
            selectors=schedule.selectors,
            options=schedule.options,
            encryption=parse_encryption(list(schedule.encrypt_to), environ=os.environ),
        )
        signs = signer if schedule.sign is not False else None
        outcome, results = export_and_publish(
            request, targets=targets, retry=RetryPolicy(attempts=egress.retries), signer=signs
        )
        result = {
            "exportId": outcome.export_id,
            "bundle": str(outcome.path),
            "signedBy": signs.key_id if signs is not None else None,
            "targets": [r.to_json() for r in results],
        }
        error = failed(results)
        if error is not None:
            error.details["run"] = result
            raise error
        return result

    return launch


def _scheduler(args: argparse.Namespace) -> Scheduler:
    from stella.schedules.scheduler import Scheduler

    return Scheduler(
        open_store(args.store),
        clock=lambda: datetime.now(UTC),
        instance=f"cli@{socket.gethostname()}:{os.getpid()}",
        launcher=launcher(args),
    )


def _launched(launches: list[Launch], store: SqlScheduleStore) -> list[dict[str, Any]]:
    fires = [store.fire(launch.fire.tenant, launch.fire.name, launch.fire.key) for launch in launches]
    return [fire.to_json() for fire in fires]


def _report(fires: list[dict[str, Any]], args: argparse.Namespace) -> int:
    """Fired slots as recorded (locally or by a server); exits with the first bad one's code."""
    bad = [fire for fire in fires if fire["status"] in ("failed", "cancelled")]
    if bad:
        args.output.keep({"fires": fires})
    else:
        args.output.result({"fires": fires})
    if not args.output.json:
        for fire in fires:
            result = fire["result"]
            where = result.get("bundle") or (f"run {result['runId']}" if result.get("runId") else "")
            if result.get("error"):
                where = result["error"].get("message", "")
            print(f"{fire['status']:<10} {fire['tenant']}/{fire['schedule']} {fire['key']}  {where}")
    if bad:
        run_end = {"code": "ERR_EXPORT_PIPELINE", "message": f"run {bad[0]['status']}"}
        error: dict[str, Any] = bad[0]["result"].get("error") or run_end
        raise error_for(str(error.get("code")), str(error.get("message")), error.get("details"))
    return 0


def _run_now(args: argparse.Namespace) -> int:
    if args.server:
        if args.sign_key:
            raise UsageError("--sign-key is the server's with --server (stella serve --sign-key)")
        if args.slot is not None:
            raise UsageError(
                "--slot fires a slot in a local store (as an Airflow DAG does), not with --server"
            )
        return _report(schedule_remote.run_now(args), args)
    scheduler = _scheduler(args)
    tenant = _tenant(args)
    if args.slot is None:
        launch = scheduler.run_now(tenant, args.name)
    else:
        launch = scheduler.run_slot(tenant, args.name, parse_time(args.slot, "--slot"))
    return _report(_launched([launch], open_store(args.store)), args)


def _tick(args: argparse.Namespace) -> int:
    if args.server:
        schedule_remote.tick(args)
    scheduler = _scheduler(args)
    return _report(_launched(scheduler.tick(), open_store(args.store)), args)
