"""``stella export run | verify | profiles`` and ``stella demo``."""

from __future__ import annotations

import argparse
import os
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from pipelines.registry import REGISTRY, get_profile
from stella.bundle.request import DEFAULT_RECORDS_PER_SHARD, ExportRequest, new_request
from stella.bundle.verify import verify_bundle
from stella.cli import bundle_cmd, publish_cmd, push_cmd, remote_cmd, schedule_cmd, trust_flags
from stella.cli.common import (
    LEDGER_HELP,
    TENANT_HELP,
    human_bytes,
    ingest_time,
    ledger_root,
    plural,
    tenant_of,
)
from stella.cli.progress import silenced_stderr
from stella.errors import UsageError
from stella.ledger.store import LedgerStore
from stella.profiles import Profile
from stella.selectors import selector_help

__all__ = ["check_out_dir", "register", "register_demo", "run_demo"]

DEMO_TENANT = "demo"


def register(groups: Any) -> None:
    export = groups.add_parser("export", help="run, verify, archive, decrypt, push and list exports")
    commands = export.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="export a tenant's evidence with a profile",
        description="Apache Beam pipeline options (e.g. --runner=dask --dask_client_address=…) are "
        "accepted only if Beam defines them; put them after -- to keep them apart. Any other "
        "unknown option is a usage error (exit 2).",
        epilog="selector keys (--selector key=value[,value], repeatable; values OR, keys AND):\n"
        + selector_help()
        + "\n\nprofiles (--profile; a planned one exits 10) and their options (--option key=value):\n"
        + _profile_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--tenant", help=TENANT_HELP)
    run.add_argument("--profile", required=True, help=f"one of: {', '.join(REGISTRY)}")
    run.add_argument(
        "--selector",
        action="append",
        default=[],
        metavar="KEY=VALUE[,VALUE]",
        help="select records (repeatable; keys below)",
    )
    run.add_argument("--out", default="out", help="folder the bundle is published in (default ./out)")
    run.add_argument("--ledger", help=LEDGER_HELP)
    run.add_argument(
        "--staging",
        metavar="URL",
        help="where pipeline steps write (a gs://bucket/prefix that every worker reaches; "
        "default: a folder beside --out)",
    )
    run.add_argument("--as-of", help="generatedAt to record instead of the data's newest timestamp")
    run.add_argument(
        "--records-per-shard",
        type=int,
        default=DEFAULT_RECORDS_PER_SHARD,
        metavar="N",
        help=f"records per data shard (default {DEFAULT_RECORDS_PER_SHARD:,})",
    )
    run.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes for the embedded runner (default 1; the bundle is the same for any N)",
    )
    run.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="profile option (e.g. next-update=48h)",
    )
    bundle_cmd.add_run_arguments(run)
    run.add_argument("--overwrite", action="store_true", help="replace a different bundle with the same id")
    publish_cmd.add_target_arguments(run)
    run.set_defaults(handler=_run, accepts_beam_args=True)

    bundle_cmd.register(commands)  # verify, archive, decrypt

    profiles = commands.add_parser("profiles", help="list export profiles and their status")
    profiles.set_defaults(handler=_profiles)

    push_cmd.register(commands)
    remote_cmd.register(commands)
    publish_cmd.register(commands)
    schedule_cmd.register(commands)


def register_demo(groups: Any) -> None:
    demo = groups.add_parser(
        "demo", help="make a demo ledger (if missing), export it with json:raw and verify it"
    )
    demo.add_argument("--ledger", help=LEDGER_HELP)
    demo.add_argument("--out", default="out", help="where bundles go (default ./out)")
    demo.add_argument("--records", type=int, default=5000, help="documents in the demo ledger (default 5000)")
    demo.set_defaults(handler=run_demo)


def check_out_dir(value: str) -> Path:
    """``--out`` must be a folder we can create and write: a usage error now, not a crash later.

    Raises:
        UsageError: the path is a file, or cannot be created or written.
    """
    out = Path(value)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder", details={"out": str(out)})
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out} cannot be created: {exc.strerror}", details={"out": str(out)}) from exc
    if not os.access(out, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out} is not writable", details={"out": str(out)})
    return out


def _registered() -> list[Profile]:
    return [entry.profile for entry in REGISTRY.values()]


def _profile_help() -> str:
    lines = []
    for profile in _registered():
        lines.append(f"  {profile.name:<15} {profile.status.value:<10} {profile.contents}")
        lines += [f"      {o.key}=<{o.type}>  {o.help} (default {o.default})" for o in profile.options]
    return "\n".join(lines)


def _request(args: argparse.Namespace) -> ExportRequest:
    return new_request(
        tenant=tenant_of(args.tenant or getattr(args, "server_tenant", None)),
        profile=get_profile(args.profile),
        ledger_root=ledger_root(args.ledger),
        out_dir=args.out,
        selectors=args.selector,
        options=args.option,
        as_of=args.as_of,
        records_per_shard=args.records_per_shard,
        encryption=bundle_cmd.encryption_from_args(args),
    )


def _summary(outcome: Any) -> dict[str, Any]:
    manifest = outcome.manifest
    return {
        "bundle": str(outcome.path),
        "exportId": outcome.export_id,
        "profile": manifest["profile"]["name"],
        "tenant": manifest["tenant"],
        "generatedAt": manifest["generatedAt"],
        "counts": manifest["counts"],
        "files": len(manifest["contents"]),
        "bytes": sum(c["bytes"] for c in manifest["contents"]),
        "unchanged": outcome.unchanged,
        "seconds": round(outcome.seconds, 3),
    }


def _print_summary(summary: dict[str, Any]) -> None:
    counts = ", ".join(f"{k} {v}" for k, v in summary["counts"].items()) or "no records selected"
    state = " (already present, identical)" if summary["unchanged"] else ""
    print(f"bundle      {summary['bundle']}{state}")
    print(f"export id   {summary['exportId']}")
    print(
        f"profile     {summary['profile']}   tenant {summary['tenant']}   generatedAt {summary['generatedAt']}"
    )
    print(f"records     {counts}")
    print(
        f"payload     {plural(summary['files'], 'file')}, {human_bytes(summary['bytes'])}   "
        f"({summary['seconds']} s)"
    )
    if summary.get("signedBy"):
        print(f"signed by   {summary['signedBy']}")
    if summary.get("encryption"):
        print(f"encrypted   data/ ({summary['encryption']})")
    if summary.get("archive"):
        print(f"archive     {summary['archive']}")
    print(
        f"verify with stella export verify {summary['bundle']}"
        + (" --key PUB" if summary.get("signedBy") else "")
    )


def _run(args: argparse.Namespace) -> int:
    from pipelines.export import export_and_publish
    from runners.options import quiet_workers, worker_args
    from runners.remote import check_remote_runner
    from stella.targets.distribute import RetryPolicy, failed

    if args.server:
        return remote_cmd.run(args)
    targets = publish_cmd.targets_from_args(args)  # a denied host fails before any work
    verbose = bool(getattr(args, "verbose", False))
    beam_args = worker_args(args.workers, args.beam_args)  # usage errors before the ledger is read
    check_remote_runner(beam_args, staging=args.staging, ledger=ledger_root(args.ledger))
    check_out_dir(args.out)
    request = _request(args)
    signer = bundle_cmd.signer_from_args(args)
    args.progress.note(
        f"exporting {request.tenant} with {request.profile.name} from "
        f"{plural(len(request.segments), 'ledger segment')}..."
    )
    with nullcontext() if verbose else silenced_stderr():
        outcome, results = export_and_publish(
            request,
            beam_args if verbose else quiet_workers(beam_args),
            targets=targets,
            retry=RetryPolicy(attempts=args.retries),
            overwrite=args.overwrite,
            signer=signer,
            archive=args.archive,
            staging=args.staging,
        )
    summary = {**_summary(outcome), **bundle_cmd.summary_fields(outcome, signer)}
    if targets:
        summary["targets"] = [result.to_json() for result in results]
    error = failed(results)  # the bundle is published locally; a target failure is still a failure
    if error is not None:
        args.output.keep(summary)
    else:
        args.output.result(summary)
    if not args.output.json:
        _print_summary(summary)
        publish_cmd.print_results(results)
    if error is not None:
        raise error
    return 0


def _profiles(args: argparse.Namespace) -> int:
    if args.server:
        return remote_cmd.profiles(args)
    args.output.result(
        {
            "profiles": [
                {
                    **p.to_json(),
                    "status": p.status.value,
                    "contents": p.contents,
                    "consumer": p.consumer,
                    "options": [option.to_json() for option in p.options],
                }
                for p in _registered()
            ]
        }
    )
    if args.output.json:
        return 0
    print(f"{'profile':<15} {'status':<10} {'options':<12} contents")
    for profile in _registered():
        options = ", ".join(profile.option_keys) or "-"
        print(f"{profile.name:<15} {profile.status.value:<10} {options:<12} {profile.contents}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """The README's first command: a demo ledger (made once), a json:raw export, a verify."""
    from pipelines.export import run_export
    from stella.ledger.generate import generate_ledger

    root = ledger_root(args.ledger)
    store = LedgerStore(root)
    if not store.segments(DEMO_TENANT):
        args.progress.note(
            f"creating a demo ledger at {root} (tenant {DEMO_TENANT}, {args.records:,} synthetic documents)..."
        )
        generate_ledger(store, DEMO_TENANT, args.records, seed=0, ingested_at=ingest_time(None), workers=1)
    request = new_request(
        tenant=DEMO_TENANT, profile=get_profile("json:raw"), ledger_root=root, out_dir=args.out
    )
    outcome = run_export(request, [])
    summary = _summary(outcome)
    report = verify_bundle(outcome.path).report
    summary["verified"] = report.ok
    args.output.result(summary)
    if not args.output.json:
        _print_summary(summary)
        trust_flags.print_verify(report)
    return 0 if report.ok else 3
