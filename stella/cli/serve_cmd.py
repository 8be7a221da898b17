"""``stella serve``, ``stella worker`` and ``stella auth token``: the service surface's commands.

``serve`` runs the API (uvicorn) in this process and the workers as child processes;
``worker`` runs one worker loop, for more machines sharing a PostgreSQL store;
``auth token`` issues a token from the embedded issuer's key.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

from stella.errors import UsageError

__all__ = ["register"]


def _service_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        metavar="URL",
        help="sqlite:///FILE or postgresql://… (default $STELLA_HOME/service/runs.db)",
    )
    parser.add_argument("--ledger", help="ledger location (default $STELLA_HOME/ledger)")
    parser.add_argument("--sign-key", metavar="REF", help="key that signs runs asking for a signature")
    parser.add_argument("--max-active-runs", type=int, help="per-tenant queued+running runs (default 4)")


def register(groups: Any) -> None:
    serve = groups.add_parser("serve", help="run the Export Center API, workers and Console")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8470, help="port (default 8470; 0 picks a free one)")
    serve.add_argument(
        "--workers", type=int, default=1, help="worker processes to start (default 1; 0: none)"
    )
    _service_arguments(serve)
    serve.set_defaults(handler=_serve)

    worker = groups.add_parser("worker", help="run one export worker against the run store")
    _service_arguments(worker)
    worker.set_defaults(handler=_worker)

    auth = groups.add_parser("auth", help="tokens for the Export Center API")
    commands = auth.add_subparsers(dest="command", metavar="COMMAND")
    token = commands.add_parser("token", help="issue a bearer token from this machine's service key")
    token.add_argument("--tenant", action="append", required=True, help="tenant (repeatable)")
    token.add_argument(
        "--scope",
        action="append",
        required=True,
        help="export:read, export:run, export:download, export:profile:manage, or all (repeatable)",
    )
    token.add_argument("--ttl", default="8h", help="lifetime: 3600, 15m, 8h, 7d (default 8h)")
    token.add_argument("--subject", default=os.environ.get("USER", "operator"), help="who the token is for")
    token.set_defaults(handler=_token)


def _config(args: argparse.Namespace) -> Any:
    from stella.service.config import ServiceConfig

    if args.max_active_runs is not None and args.max_active_runs < 1:
        raise UsageError("--max-active-runs must be at least 1")
    return ServiceConfig.from_env(
        store_url=args.store,
        ledger_root=args.ledger,
        sign_key=args.sign_key,
        max_active_runs=args.max_active_runs,
    )


def _token(args: argparse.Namespace) -> int:
    from stella.service.auth import SCOPES, LocalKeys, issue_token, parse_ttl
    from stella.service.config import ServiceConfig

    scopes = [s for value in args.scope for s in (SCOPES if value == "all" else [value])]
    keys = LocalKeys.load_or_create(ServiceConfig.from_env().token_key)
    token = issue_token(
        keys, tenants=args.tenant, scopes=scopes, subject=args.subject, ttl_seconds=parse_ttl(args.ttl)
    )
    args.output.result({"token": token, "tenants": args.tenant, "scopes": sorted(set(scopes))})
    if not args.output.json:
        print(token)
    return 0


def _stop_flag() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _worker(args: argparse.Namespace) -> int:
    from stella.service.store import open_store
    from stella.service.worker import Worker
    from stella.telemetry.logs import configure_json_logging

    configure_json_logging()
    config = _config(args)
    stop = _stop_flag()
    store = open_store(config.store_url)
    try:
        Worker(config, store).run_forever(stop.is_set)
    finally:
        store.close()
    return 0


def _worker_command(args: argparse.Namespace, config: Any) -> list[str]:
    command = [
        sys.executable,
        "-P",  # the cwd is not put first on sys.path: a checkout there would shadow the installed package
        "-m",
        "stella",
        "worker",
        "--store",
        config.store_url,
        "--ledger",
        config.ledger_root,
    ]
    if config.sign_key:
        command += ["--sign-key", config.sign_key]
    return command


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from stella.service.app import create_app
    from stella.service.store import open_store
    from stella.telemetry.logs import configure_json_logging

    if args.workers < 0:
        raise UsageError("--workers must be 0 or more")
    configure_json_logging()
    config = _config(args)
    store = open_store(config.store_url)  # migrate before workers start
    app = create_app(config, store)
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from exc
    host, port = sock.getsockname()[:2]
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    from stella.service.worker import die_with_parent

    # A worker stops (SIGTERM: its run is requeued) when the service dies, even by SIGKILL or the OOM
    # killer, when the ``finally`` below never runs: no orphaned workers keep taking runs.
    workers = [
        subprocess.Popen(_worker_command(args, config), preexec_fn=lambda: die_with_parent(signal.SIGTERM))
        for _ in range(args.workers)
    ]
    print(
        f"Export Center  {url}   (store {config.store_url.split('@')[-1]}, {args.workers} worker(s))",
        flush=True,
    )
    print(f"Console        {url}/console/", flush=True)
    print("token          stella auth token --tenant TENANT --scope all", flush=True)
    print(
        f"CLI            stella --server {url} --tenant TENANT export list   (token in STELLA_TOKEN)",
        flush=True,
    )
    server = uvicorn.Server(
        uvicorn.Config(app, log_config=None, access_log=False, timeout_graceful_shutdown=5)
    )
    try:
        server.run(sockets=[sock])
    finally:
        for process in workers:
            process.terminate()
        for process in workers:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return 0
