"""``stella --server URL … export run | status | list | download | verify | profiles``.

The same commands as locally, through the HTTP API (token in ``STELLA_TOKEN``): the
server runs the export; the CLI follows its events, downloads the bundle (resuming
after an interruption), verifies every digest locally and only then reports success.
Failures carry the server's error code, so exit codes are those of a local run.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stella.bundle.verify import failure, verify_bundle
from stella.cli.common import human_bytes, recipients_from_args
from stella.cli.publish_cmd import print_results
from stella.errors import UsageError
from stella.targets.distribute import failed
from stella.targets.interface import TargetResult

if TYPE_CHECKING:  # imported where used: httpx and its CLI extras cost every `stella` call ~0.04 CPU s
    from stella.service.client import ApiClient

__all__ = ["api_client", "download", "list_runs", "profiles", "register", "run", "status", "verify"]


def register(commands: Any) -> None:
    """The commands that exist only against a server (``status``, ``list``, ``download``)."""
    status_cmd = commands.add_parser("status", help="a run's status and progress (with --server)")
    status_cmd.add_argument("run_id", metavar="RUN_ID", help="the run's id (from export run or list)")
    status_cmd.set_defaults(handler=status)

    listing = commands.add_parser("list", help="the tenant's runs, newest first (with --server)")
    listing.add_argument(
        "--status",
        choices=["queued", "running", "succeeded", "failed", "cancelled", "expired"],
        help="only runs in this state",
    )
    listing.add_argument("--profile", help="only runs of this profile")
    listing.add_argument("--limit", type=int, default=20, help="at most this many runs (1-200, default 20)")
    listing.set_defaults(handler=list_runs)

    fetch = commands.add_parser(
        "download", help="download a run's bundle (resumes), verify every digest (with --server)"
    )
    fetch.add_argument("run_id", metavar="RUN_ID", help="the run's id (from export run or list)")
    fetch.add_argument("--out", default="out", help="folder for <exportId>.tar.zst (default ./out)")
    from stella.cli.trust_flags import add_trust_arguments

    add_trust_arguments(fetch, "verify signatures with this public key")
    fetch.set_defaults(handler=download)


def api_client(args: argparse.Namespace, tenant: str | None = None) -> ApiClient:
    """The client for ``--server`` (token from ``STELLA_TOKEN``); a usage error without a server."""
    server = getattr(args, "server", None)
    if not server:
        raise UsageError(
            f"stella export {args.command} talks to a server: give --server URL (or STELLA_SERVER)"
        )
    from stella.service.client import ApiClient

    return ApiClient(server, os.environ.get("STELLA_TOKEN"), tenant or getattr(args, "server_tenant", None))


def _options(pairs: list[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"--option {pair!r}: expected key=value", details={"option": pair})
        options[key] = value
    return options


def run(args: argparse.Namespace) -> int:
    if args.sign_key or args.ledger or args.staging or args.workers or args.beam_args:
        raise UsageError(
            "--sign-key, --ledger, --staging, --workers and Beam options are the server's with --server "
            "(a stored profile with sign: true signs with the server's key)"
        )
    if args.allow_host or args.allow_plain_http or args.username:
        raise UsageError(
            "--allow-host, --allow-plain-http and --username are the server's with --server: its egress "
            "allowlist and registry credentials decide where --target may publish"
        )
    body: dict[str, Any] = {
        "profile": args.profile,
        "selectors": args.selector,
        "options": _options(args.option),
        "encryptTo": recipients_from_args(args),
    }
    if args.as_of:
        body["asOf"] = args.as_of
    if args.allow_empty:
        body["allowEmpty"] = True
    if args.target:
        body["targets"] = args.target  # the server refuses a denied host (exit 8) before queueing
    with api_client(args, args.tenant) as client:
        submitted = client.submit(body, idempotency_key=uuid.uuid4().hex)
        run_id = submitted["runId"]
        args.progress.note(f"run {run_id} queued on {args.server}")
        seen = {"records": 0, "files": 0}
        for kind, data in client.events(run_id):
            if kind == "progress":
                records, files = int(data.get("recordsRead", 0)), int(data.get("filesWritten", 0))
                args.progress.advance("read", done=records - seen["records"])
                args.progress.advance("write", done=files - seen["files"], unit="files")
                seen.update(records=records, files=files)
            elif kind in ("started", "requeued", "cancel_requested"):
                args.progress.note(f"{kind} (attempt {data.get('attempt', '-')})")
        final = client.run(run_id)
        if final["status"] != "succeeded":
            error = final.get("error") or {"code": "ERR_EXPORT_PIPELINE", "message": f"run {final['status']}"}
            from stella.service.client import RemoteApiError

            raise RemoteApiError(
                error["code"], f"run {run_id}: {error['message']}", details={"runId": run_id}
            )
        archive, report = _fetch_and_verify(client, final, Path(args.out), None)
    summary = _summary(final, archive, report.ok)
    published = [TargetResult(**target) for target in final["result"].get("targets") or []]
    if published:
        summary["targets"] = [target.to_json() for target in published]
    error = failed(published)  # as locally: the bundle is there, a target that failed is a failure
    if error is not None:
        args.output.keep(summary)
    else:
        args.output.result(summary)
    if not args.output.json:
        _print(summary)
        print_results(published)
    if error is not None:
        raise error
    return 0


def _fetch_and_verify(client: ApiClient, run_doc: dict[str, Any], out: Path, trust: Any) -> tuple[Path, Any]:
    target = out / str(run_doc["result"]["archive"])
    size = int(run_doc["result"]["archiveBytes"])
    from stella.service.client import download_resumable

    download_resumable(
        client,
        run_doc,
        target,
        progress=lambda done, _total: (
            logging.getLogger(__name__).info("downloaded %s of %s", human_bytes(done), human_bytes(size))
            if done == size
            else None
        ),
    )
    report = verify_bundle(target, trust=trust).report
    if not report.ok:
        raise failure(report)
    return target, report


def _summary(run_doc: dict[str, Any], archive: Path, verified: bool) -> dict[str, Any]:
    result = run_doc["result"]
    return {
        "runId": run_doc["runId"],
        "bundle": str(archive),
        "exportId": run_doc["exportId"],
        "profile": run_doc["profile"],
        "tenant": run_doc["tenant"],
        "generatedAt": result["generatedAt"],
        "counts": result["counts"],
        "files": result["files"],
        "bytes": result["archiveBytes"],
        "digest": result["archiveDigest"],
        "verified": verified,
    }


def _print(summary: dict[str, Any]) -> None:
    counts = ", ".join(f"{k} {v}" for k, v in summary["counts"].items()) or "no records selected"
    print(f"bundle      {summary['bundle']}")
    print(f"export id   {summary['exportId']}   run {summary['runId']}")
    print(
        f"profile     {summary['profile']}   tenant {summary['tenant']}   generatedAt {summary['generatedAt']}"
    )
    print(f"records     {counts}")
    print(f"archive     {human_bytes(summary['bytes'])}  {summary['digest']}  (every digest verified)")


def status(args: argparse.Namespace) -> int:
    with api_client(args) as client:
        run_doc = client.run(args.run_id)
    args.output.result({"run": run_doc})
    if args.output.json:
        return 0
    progress = run_doc.get("progress") or {}
    print(f"run         {run_doc['runId']}   {run_doc['status']}   attempts {run_doc['attempts']}")
    print(f"profile     {run_doc['profile']}   tenant {run_doc['tenant']}   created {run_doc['createdAt']}")
    if progress:
        print(f"progress    {progress.get('percent', 0)}%  {progress.get('recordsRead', 0)} records read")
    if run_doc.get("exportId"):
        print(f"export id   {run_doc['exportId']}   {run_doc['result']['archiveDigest']}")
    if run_doc.get("error"):
        print(f"error       [{run_doc['error']['code']}] {run_doc['error']['message']}")
    return 0


def list_runs(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 200:
        raise UsageError("--limit must be between 1 and 200")
    with api_client(args) as client:
        page = client.runs(status=args.status or "", profile=args.profile or "", limit=str(args.limit))
    args.output.result({"runs": page["items"]})
    if args.output.json:
        return 0
    print(f"{'run':<38} {'status':<10} {'profile':<14} created")
    for item in page["items"]:
        print(f"{item['runId']:<38} {item['status']:<10} {item['profile']:<14} {item['createdAt']}")
    return 0


def download(args: argparse.Namespace) -> int:
    from stella.cli.trust_flags import trust_from_args

    with api_client(args) as client:
        archive, report = _fetch_and_verify(
            client, client.run(args.run_id), Path(args.out), trust_from_args(args)
        )
    args.output.result({**report.to_json(), "bundle": str(archive), "verified": True})
    if not args.output.json:
        print(f"bundle      {archive}")
        print(f"verified    {report.checked} files match export.json ({report.export_id})")
    return 0


def verify(args: argparse.Namespace) -> int:
    """``export verify RUN_ID`` against a server: fetch into a temp folder, verify as locally."""
    from stella.cli.trust_flags import print_verify, trust_from_args

    if args.record:
        raise UsageError("--record applies to local bundles: download the run, then verify it with --record")
    with api_client(args) as client, tempfile.TemporaryDirectory(prefix="stella-verify-") as scratch:
        _archive, report = _fetch_and_verify(
            client, client.run(args.bundle), Path(scratch), trust_from_args(args)
        )
        args.output.result(report.to_json())
        if not args.output.json:
            print_verify(report)
    return 0


def profiles(args: argparse.Namespace) -> int:
    with api_client(args) as client:
        data = client.profiles()
    args.output.result(data)
    if args.output.json:
        return 0
    print(f"{'profile':<22} {'status':<10} contents")
    for item in data["builtin"]:
        print(f"{item['name']:<22} {item['status']:<10} {item['contents']}")
    for item in data["stored"]:
        print(
            f"{item['name']:<22} {'rev ' + str(item['revision']):<10} {item['profile']} {' '.join(item['selectors'])}"
        )
    return 0
