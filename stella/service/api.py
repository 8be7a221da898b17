"""Routes under ``/api/export/``: profiles, runs, events, manifests and downloads.

Each route: authenticate, require a scope, parse, call the store or a library function,
render. The store is always asked with the caller's tenant, so a run, profile or file
of another tenant is simply not found (404), never forbidden, never leaked.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    MalformedRangeHeader,
    RangeNotSatisfiable,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from pipelines.registry import REGISTRY
from pipelines.registry import get_profile as builtin_profile
from stella.bundle.encrypt import parse_encryption
from stella.bundle.paths import CONTROL_FILES, MANIFEST, PROVENANCE, SIGNATURES_DIR
from stella.bundle.request import new_request
from stella.errors import NotFoundError, NotReadyError, RangeNotSatisfiableError, UsageError
from stella.guards.ids import check_id
from stella.service.auth import Principal
from stella.service.bodies import (
    ProfileBody,
    RunBody,
    check_idempotency_key,
    check_profile_name,
    check_run_id,
    parse_json,
)
from stella.service.config import ServiceConfig
from stella.service.store.interface import TERMINAL, Run, RunStatus, RunStore
from stella.service.targets import service_targets

__all__ = ["routes"]

T = TypeVar("T")
_PREFIX = "/api/export"
_TERMINAL_EVENTS = frozenset(status.value for status in TERMINAL)


async def _call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await run_in_threadpool(function, *args, **kwargs)


async def _principal(request: Request, scope: str) -> Principal:
    auth = request.app.state.auth
    arguments = (request.headers.get("authorization"), request.headers.get("x-stella-tenant"))
    # An embedded-key check is a few microseconds of CPU: no thread hop unless JWKS may fetch.
    principal: Principal = (
        await _call(auth.authenticate, *arguments) if auth.needs_io else auth.authenticate(*arguments)
    )
    principal.require(scope)
    return principal


def _store(request: Request) -> RunStore:
    store: RunStore = request.app.state.store
    return store


def _config(request: Request) -> ServiceConfig:
    config: ServiceConfig = request.app.state.config
    return config


def _run_links(run_id: str) -> dict[str, str]:
    base = f"{_PREFIX}/runs/{run_id}"
    return {
        "self": base,
        "events": f"{base}/events",
        "download": f"{base}/download",
        "cancel": f"{base}/cancel",
    }


def _render_run(run: Run) -> dict[str, Any]:
    return {**run.to_json(), "links": _run_links(run.id)}


async def _get_run(request: Request, principal: Principal) -> Run:
    run_id = check_run_id(request.path_params["run_id"])
    run = await _call(_store(request).get_run, principal.tenant, run_id)
    if run is None:
        raise NotFoundError(f"run {run_id} not found", details={"runId": run_id})
    return run


# -- profiles ---------------------------------------------------------------------------------


def _builtin(name: str) -> dict[str, Any]:
    profile = REGISTRY[name].profile
    return {
        **profile.to_json(),
        "builtin": True,
        "status": profile.status.value,
        "contents": profile.contents,
        "consumer": profile.consumer,
        "options": [
            {"key": o.key, "type": o.type, "default": o.default, "help": o.help} for o in profile.options
        ],
    }


async def _list_profiles(request: Request) -> Response:
    principal = await _principal(request, "export:read")
    stored = await _call(_store(request).list_profiles, principal.tenant)
    return JSONResponse(
        {
            "builtin": [_builtin(name) for name in REGISTRY],
            "stored": [profile.to_json() for profile in stored],
        }
    )


async def _get_profile(request: Request) -> Response:
    principal = await _principal(request, "export:read")
    name = request.path_params["name"]
    if name in REGISTRY:
        return JSONResponse(_builtin(name))
    check_profile_name(name)
    revision = request.query_params.get("revision")
    number = _positive_int(revision, "revision") if revision is not None else None
    stored = await _call(_store(request).get_profile, principal.tenant, name, number)
    if stored is None:
        raise NotFoundError(f"profile {name} not found", details={"profile": name})
    return JSONResponse(stored.to_json())


def _validate_profile(config: ServiceConfig, body: ProfileBody) -> None:
    """What a run with this profile would check, minus the ledger (profiles outlive ledgers)."""
    from stella.profiles import parse_profile_options
    from stella.selectors import parse_selectors

    profile = builtin_profile(body.profile)
    parse_selectors(body.selectors)
    parse_profile_options([f"{k}={v}" for k, v in sorted(body.options.items())], profile)
    parse_encryption(body.encrypt_to, environ={})
    if body.sign and not config.sign_key:
        raise UsageError("sign: true needs a service signing key (stella serve --sign-key)")
    service_targets(body.targets)  # as a run's targets: a denied host is refused (403), nothing stored


async def _put_profile(request: Request, *, create: bool) -> Response:
    principal = await _principal(request, "export:profile:manage")
    raw = parse_json(await request.body())
    if create:
        name = raw.get("name")
        if not isinstance(name, str):
            raise UsageError("name is required", details={"field": "name"})
    else:
        name = request.path_params["name"]
        if raw.get("name", name) != name:
            raise UsageError("name in the body differs from the path", details={"field": "name"})
    check_profile_name(name)
    if name in REGISTRY:
        raise UsageError(f"{name} is a built-in profile name", details={"profile": name})
    body = ProfileBody.from_json(raw)
    _validate_profile(_config(request), body)
    stored = await _call(_store(request).put_profile, principal.tenant, name, body.to_json(), create=create)
    return JSONResponse(stored.to_json(), status_code=201 if create else 200)


async def _create_profile(request: Request) -> Response:
    return await _put_profile(request, create=True)


async def _update_profile(request: Request) -> Response:
    return await _put_profile(request, create=False)


# -- runs -------------------------------------------------------------------------------------


def _positive_int(text: str, what: str, maximum: int | None = None) -> int:
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"{what} must be a positive integer", details={"field": what})
    value = int(text)
    if maximum is not None and value > maximum:
        raise UsageError(f"{what} must be at most {maximum}", details={"field": what})
    return value


def _run_params(
    config: ServiceConfig, store: RunStore, tenant: str, body: RunBody
) -> tuple[str, dict[str, Any]]:
    """Resolve a stored profile, freeze the parameters, and check them as a run would."""
    params: dict[str, Any]
    if body.profile in REGISTRY:
        if body.profile_revision is not None:
            raise UsageError(
                "profileRevision applies to stored profiles only", details={"field": "profileRevision"}
            )
        profile = body.profile
        params = {"storedProfile": None, "selectors": body.selectors, "options": body.options}
        params.update({"encryptTo": body.encrypt_to, "sign": body.sign})
        targets = body.targets
    else:
        check_profile_name(body.profile, "profile")
        stored = store.get_profile(tenant, body.profile, body.profile_revision)
        if stored is None:
            raise NotFoundError(f"profile {body.profile} not found", details={"profile": body.profile})
        base = ProfileBody.from_json(stored.body)
        profile = base.profile
        params = {
            "storedProfile": stored.name,
            "profileRevision": stored.revision,
            "selectors": [*base.selectors, *body.selectors],
            "options": {**base.options, **body.options},
            "encryptTo": body.encrypt_to or base.encrypt_to,
            "sign": body.sign or base.sign,
        }
        # A run's own targets replace the stored ones (as encryptTo does); the stored ones are
        # checked again below, since the allowlist may have narrowed since the profile was stored.
        targets = body.targets or base.targets
    if body.as_of is not None:
        params["asOf"] = body.as_of
    if body.allow_empty:
        params["allowEmpty"] = True
    if targets:
        service_targets(targets)  # a denied host is refused (403) before anything is queued
        params["targets"] = targets
    if params["sign"] and not config.sign_key:
        raise UsageError("sign: true needs a service signing key (stella serve --sign-key)")
    new_request(  # the same checks as the CLI (and the worker), before anything is queued
        tenant=tenant,
        profile=builtin_profile(profile),
        selectors=params["selectors"],
        options=[f"{k}={v}" for k, v in sorted(params["options"].items())],
        ledger_root=config.ledger_root,
        out_dir=str(config.bundle_dir(tenant)),
        as_of=body.as_of,
        encryption=parse_encryption(params["encryptTo"], environ={}),
        allow_empty=body.allow_empty,
    )
    return profile, params


async def _create_run(request: Request) -> Response:
    principal = await _principal(request, "export:run")
    key = check_idempotency_key(request.headers.get("idempotency-key"))
    body = RunBody.from_json(parse_json(await request.body()))
    config, store = _config(request), _store(request)
    profile, params = await _call(_run_params, config, store, principal.tenant, body)
    run, created = await _call(
        store.create_run,
        tenant=principal.tenant,
        profile=profile,
        params={**params, "submittedBy": principal.subject},
        idempotency_key=key,
        max_active=config.max_active_runs,
        retry_after=config.retry_after,
    )
    active = await _call(store.active_runs, principal.tenant)
    headers = {
        "Location": f"{_PREFIX}/runs/{run.id}",
        "X-Stella-Quota-Limit": str(config.max_active_runs),
        "X-Stella-Quota-Remaining": str(max(0, config.max_active_runs - active)),
    }
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(_render_run(run), status_code=202 if created else 200, headers=headers)


async def _list_runs(request: Request) -> Response:
    principal = await _principal(request, "export:read")
    query = request.query_params
    status_text = query.get("status")
    try:
        status = RunStatus(status_text) if status_text else None
    except ValueError as exc:
        raise UsageError(
            f"status must be one of {', '.join(s.value for s in RunStatus)}", details={"field": "status"}
        ) from exc
    limit = _positive_int(query.get("limit", "50"), "limit", maximum=200)
    page = await _call(
        _store(request).list_runs,
        principal.tenant,
        status=status,
        profile=query.get("profile") or None,
        limit=limit,
        cursor=query.get("cursor") or None,
    )
    return JSONResponse({"items": [_render_run(run) for run in page.runs], "nextCursor": page.next_cursor})


async def _show_run(request: Request) -> Response:
    principal = await _principal(request, "export:read")
    return JSONResponse(_render_run(await _get_run(request, principal)))


async def _cancel_run(request: Request) -> Response:
    principal = await _principal(request, "export:run")
    run = await _get_run(request, principal)
    cancelled = await _call(_store(request).cancel_run, principal.tenant, run.id)
    assert cancelled is not None
    return JSONResponse(_render_run(cancelled), status_code=202)


async def _run_events(request: Request) -> Response:
    """SSE: every event since ``Last-Event-ID`` (or ``?after=``), then live ones until the end."""
    principal = await _principal(request, "export:read")
    run = await _get_run(request, principal)
    raw_after = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    if not raw_after.isdigit():
        raise UsageError("Last-Event-ID must be an event id (a non-negative integer)")
    after = int(raw_after)
    store, config = _store(request), _config(request)
    poll = min(0.25, config.poll_seconds)

    async def stream() -> AsyncIterator[str]:
        last, quiet_since = after, anyio.current_time()
        yield "retry: 1000\n\n"
        while True:
            events = await _call(store.events_after, principal.tenant, run.id, last)
            for event in events:
                last = event.seq
                data = json.dumps({**event.data, "at": event.at}, sort_keys=True)
                yield f"id: {event.seq}\nevent: {event.type}\ndata: {data}\n\n"
                if event.type in _TERMINAL_EVENTS:
                    return
            if events:
                quiet_since = anyio.current_time()
                continue
            current = await _call(store.get_run, principal.tenant, run.id)
            if current is None or current.status in TERMINAL:
                return  # the terminal event was already delivered before Last-Event-ID
            if anyio.current_time() - quiet_since >= config.sse_heartbeat_seconds:
                quiet_since = anyio.current_time()
                yield ": heartbeat\n\n"
            if await request.is_disconnected():
                return
            await anyio.sleep(poll)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# -- bundle content ---------------------------------------------------------------------------


async def _published(request: Request) -> tuple[Run, Path]:
    """The caller's succeeded run and its bundle folder; anything else is not downloadable."""
    principal = await _principal(request, "export:download")
    run = await _get_run(request, principal)
    if run.status is not RunStatus.SUCCEEDED or not run.export_id:
        raise NotReadyError(
            f"run {run.id} is {run.status.value}: only a succeeded run has a bundle to download",
            details={"runId": run.id, "status": run.status.value},
        )
    bundle = _config(request).bundle_dir(run.tenant) / check_id(run.export_id, "exportId")
    if not (bundle / MANIFEST).is_file():
        raise NotFoundError(f"the bundle of run {run.id} is no longer stored", details={"runId": run.id})
    return run, bundle


def _etag_matches(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match")
    if not header:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in tags or etag in tags


@lru_cache(maxsize=1024)
def _digest_of(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def _file_digest(path: Path) -> str:
    stat = path.stat()
    return _digest_of(str(path), stat.st_size, stat.st_mtime_ns)


async def _serve(
    request: Request, path: Path, digest: str, media_type: str, filename: str | None
) -> Response:
    etag = f'"{digest}"'
    headers = {"ETag": etag, "Cache-Control": "private, no-cache", "X-Content-Digest": digest}
    if _etag_matches(request, etag):
        return Response(status_code=304, headers=headers)
    stat = await _call(path.stat)
    response = FileResponse(path, media_type=media_type, headers=headers, filename=filename, stat_result=stat)
    _check_range(request, response, stat.st_size)
    return response


def _check_range(request: Request, response: FileResponse, size: int) -> None:
    """Refuse a bad ``Range`` here, before FileResponse answers it in plain text.

    FileResponse's own parser judges the header (so what is refused here is exactly what it
    would refuse), and the refusal becomes a StellaError: the one catch site renders the shared
    error body for a 400 or 416 as for every other failure.
    """
    http_range = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if http_range is None or (if_range is not None and not response._should_use_range(if_range)):
        return  # no range, or a stale If-Range: the whole file is sent
    details = {"range": http_range[:200], "size": size}
    try:
        FileResponse._parse_range_header(http_range, size)
    except MalformedRangeHeader as exc:
        raise UsageError(f"malformed Range header ({exc.content})", details=details) from None
    except RangeNotSatisfiable:
        raise RangeNotSatisfiableError(
            f"the range {http_range[:200]!r} starts beyond the {size} bytes of the file", details=details
        ) from None


async def _download(request: Request) -> Response:
    run, bundle = await _published(request)
    archive = bundle.parent / str(run.result["archive"])
    if not archive.is_file():
        raise NotFoundError(f"the archive of run {run.id} is no longer stored", details={"runId": run.id})
    return await _serve(request, archive, str(run.result["archiveDigest"]), "application/zstd", archive.name)


async def _manifest(request: Request) -> Response:
    run, bundle = await _published(request)
    return await _serve(
        request, bundle / MANIFEST, str(run.result["manifestDigest"]), "application/json", None
    )


async def _provenance(request: Request) -> Response:
    _run, bundle = await _published(request)
    path = bundle / PROVENANCE
    return await _serve(request, path, await _call(_file_digest, path), "application/json", None)


def _bundle_member(bundle: Path, relative: str) -> Path:
    """A file the manifest lists (or a control file): never a path the caller composes freely."""
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or not relative or relative != pure.as_posix():
        raise UsageError("malformed file path", details={"path": relative[:200]})
    manifest_doc = json.loads((bundle / MANIFEST).read_bytes())
    listed = {str(entry["path"]) for entry in manifest_doc.get("contents", [])}
    signatures = bundle / SIGNATURES_DIR
    if signatures.is_dir():
        listed |= {
            f"{SIGNATURES_DIR}/{p.name}" for p in signatures.iterdir() if p.is_file() and not p.is_symlink()
        }
    if relative not in listed and relative not in CONTROL_FILES:
        raise NotFoundError(f"{relative} is not a file of this bundle", details={"path": relative[:200]})
    path = bundle / relative
    if path.is_symlink() or not path.is_file():
        raise NotFoundError(f"{relative} is not stored", details={"path": relative[:200]})
    return path


async def _bundle_file(request: Request) -> Response:
    _run, bundle = await _published(request)
    path = await _call(_bundle_member, bundle, request.path_params["path"])
    digest = await _call(_file_digest, path)
    return await _serve(request, path, digest, "application/octet-stream", path.name)


async def _verification(request: Request) -> Response:
    """The library's offline verification of the published bundle (the Console shows it)."""
    from stella.bundle.verify import verify_bundle

    run, bundle = await _published(request)
    result = await _call(verify_bundle, bundle)
    return JSONResponse({**result.report.to_json(), "bundle": run.export_id})  # never a server path


def routes() -> list[Route]:
    runs = f"{_PREFIX}/runs/{{run_id}}"
    return [
        Route(f"{_PREFIX}/profiles", _list_profiles, methods=["GET"]),
        Route(f"{_PREFIX}/profiles", _create_profile, methods=["POST"]),
        Route(f"{_PREFIX}/profiles/{{name}}", _get_profile, methods=["GET"]),
        Route(f"{_PREFIX}/profiles/{{name}}", _update_profile, methods=["PUT"]),
        Route(f"{_PREFIX}/runs", _create_run, methods=["POST"]),
        Route(f"{_PREFIX}/runs", _list_runs, methods=["GET"]),
        Route(runs, _show_run, methods=["GET"]),
        Route(f"{runs}/cancel", _cancel_run, methods=["POST"]),
        Route(f"{runs}/events", _run_events, methods=["GET"]),
        Route(f"{runs}/manifest", _manifest, methods=["GET"]),
        Route(f"{runs}/provenance", _provenance, methods=["GET"]),
        Route(f"{runs}/download", _download, methods=["GET"]),
        Route(f"{runs}/verification", _verification, methods=["GET"]),
        Route(f"{runs}/files/{{path:path}}", _bundle_file, methods=["GET"]),
    ]
