"""``stella --server URL export schedule …``: the schedule commands through the API.

The same commands, flags, JSON envelopes and exit codes as against the local store;
only where the work happens differs. The server enforces its own rules -- the token's
scopes (``export:read`` to list, ``export:run`` to change or run), its tenant, its
egress allowlist -- so the flags that would widen or point at local resources
(``--allow-host``, ``--ledger``, …) are refused rather than silently ignored. ``run-now``
follows the queued run to its end, then reports the fired slot as the server records it
(the run's final state and per-target results), exiting as a local ``run-now`` would.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, NoReturn

from stella.cli.remote_cmd import api_client
from stella.errors import UsageError
from stella.model import validate_tenant
from stella.schedules.model import Schedule, validate_name

if TYPE_CHECKING:  # its client is built by remote_cmd.api_client, which imports it when called
    from stella.service.client import ApiClient

__all__ = ["change", "create", "list_schedules", "run_now", "tick"]

_SERVER_DECIDES = "the server's configuration decides it (its egress allowlist, ledger and credentials)"


def _refuse_local(args: argparse.Namespace, *flags: str) -> None:
    given = [flag for flag in flags if getattr(args, flag.lstrip("-").replace("-", "_"), None)]
    if given:
        raise UsageError(f"{', '.join(given)} with --server: {_SERVER_DECIDES}", details={"flags": given})


def _client(args: argparse.Namespace) -> ApiClient:
    _refuse_local(args, "--store")  # the server's store is the server's
    return api_client(args, validate_tenant(args.tenant) if args.tenant else None)


def create(args: argparse.Namespace) -> Schedule:
    _refuse_local(args, "--allow-host")
    body: dict[str, Any] = {
        "name": validate_name(args.name),
        "profile": args.profile,
        "selectors": args.selector,
        "options": args.option,
        "targets": args.target,
        "catchUp": args.catch_up,
        "sign": args.sign,
        "encryptTo": args.encrypt_to,
    }
    if args.cron is not None:
        body |= {"cron": args.cron, "timezone": args.timezone}
    elif args.at is not None:
        body["at"] = args.at
    else:
        body |= {"on": args.on, "quietSeconds": args.quiet, "maxDelaySeconds": args.max_delay}
    with _client(args) as client:
        return Schedule.from_json(client.create_schedule(body))


def list_schedules(args: argparse.Namespace) -> list[dict[str, Any]]:
    with _client(args) as client:
        return [{k: v for k, v in item.items() if k != "links"} for item in client.schedules()]


def change(args: argparse.Namespace) -> str:
    """Pause, resume or delete; returns the schedule's tenant (the one the server acted for)."""
    name = validate_name(args.name)
    with _client(args) as client:
        if args.change != "delete":
            return str(client.schedule_action(name, args.change)["tenant"])
        tenant = str(client.schedule(name)["tenant"])
        client.delete_schedule(name)
        return tenant


def run_now(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Fire the schedule on the server, follow its run to the end, return the slot as recorded."""
    _refuse_local(args, "--ledger", "--allow-host", "--allow-plain-http", "--username")
    name = validate_name(args.name)
    with _client(args) as client:
        fire = client.schedule_action(name, "run")
        run_id = str(fire["result"].get("runId", ""))
        if run_id:
            args.progress.note(
                f"schedule {name} fired slot {fire['key']}: run {run_id} queued on {args.server}"
            )
            for kind, data in client.events(run_id):
                if kind in ("started", "requeued", "published"):
                    args.progress.note(f"{kind} {data.get('target', '')}".rstrip())
        fires = [item for item in client.schedule(name)["fires"] if item["key"] == fire["key"]]
    return fires or [fire]


def tick(args: argparse.Namespace) -> NoReturn:
    raise UsageError(
        "schedule tick drives the local store; a server runs its own scheduler in every worker",
        details={"server": args.server},
    )
