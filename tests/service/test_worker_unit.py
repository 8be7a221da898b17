"""Worker pieces that need no pipeline: retention pruning and the OIDC (JWKS) verifier."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from stella.errors import UnauthenticatedError
from stella.service.auth import Authenticator
from stella.service.config import ServiceConfig
from stella.service.store.interface import RunStatus
from stella.service.store.sqlite import SqliteRunStore
from stella.service.worker import Worker


def test_retention_removes_bundles_no_live_run_uses(tmp_path: Path) -> None:
    now = [time.time() - 2 * 86400]  # two days ago; pruning happens at the real now (staging mtimes are real)
    store = SqliteRunStore(tmp_path / "runs.db", clock=lambda: now[0])
    store.migrate()
    config = ServiceConfig.from_env({"STELLA_HOME": str(tmp_path)}, retention_days=1.0)
    folder = config.bundle_dir("acme")

    def publish(export_id: str) -> str:
        run, _ = store.create_run(
            tenant="acme", profile="json:raw", params={}, idempotency_key=None, max_active=9, retry_after=1
        )
        assert store.claim_run("w", 10) is not None
        (folder / export_id).mkdir(parents=True, exist_ok=True)
        (folder / export_id / "export.json").write_text("{}")
        (folder / f"{export_id}.tar.zst").write_bytes(b"x")
        assert store.finish_run(run.id, "w", RunStatus.SUCCEEDED, export_id=export_id)
        return run.id

    old = publish("acme-json-raw-old")
    shared_old = publish("acme-json-raw-shared")
    now[0] = time.time()
    publish("acme-json-raw-shared")  # a recent run still serves the same bundle
    fresh, stale = folder / ".stella-staging-busy", folder / ".stella-staging-dead"
    fresh.mkdir()
    stale.mkdir()
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    worker = Worker(config, store, worker_id="w", clock=lambda: now[0])
    worker.prune()
    assert not (folder / "acme-json-raw-old").exists() and not (folder / "acme-json-raw-old.tar.zst").exists()
    assert (folder / "acme-json-raw-shared" / "export.json").exists()
    for run_id in (old, shared_old):
        run = store.get_run("acme", run_id)
        assert run is not None and run.status is RunStatus.EXPIRED
    assert fresh.exists() and not stale.exists()  # only an abandoned staging folder goes


@pytest.fixture()
def jwks_server() -> Iterator[tuple[str, rsa.RSAPrivateKey]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", key
    server.shutdown()


def test_oidc_tokens_are_checked_against_the_issuer_jwks(jwks_server: tuple[str, rsa.RSAPrivateKey]) -> None:
    url, key = jwks_server
    auth = Authenticator(jwks_url=url, issuer="https://idp.example", audience="stella")
    claims = {
        "iss": "https://idp.example",
        "aud": "stella",
        "sub": "alice",
        "iat": int(time.time()),
        "exp": int(time.time()) + 300,
        "tenants": ["acme"],
        "scope": "export:read",
    }
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
    principal = auth.authenticate(f"Bearer {token}", None)
    assert (principal.subject, principal.tenant, principal.scopes) == (
        "alice",
        "acme",
        frozenset({"export:read"}),
    )
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for bad in (
        jwt.encode(claims, other, algorithm="RS256", headers={"kid": "k1"}),
        jwt.encode({**claims, "aud": "someone-else"}, key, algorithm="RS256", headers={"kid": "k1"}),
        jwt.encode({**claims, "exp": int(time.time()) - 60}, key, algorithm="RS256", headers={"kid": "k1"}),
    ):
        with pytest.raises(UnauthenticatedError):
            auth.authenticate(f"Bearer {bad}", None)


def test_the_services_worker_command_imports_this_package_whatever_the_current_folder_holds(
    tmp_path: Path,
) -> None:
    """``python -m`` puts the cwd first on sys.path: another checkout there must not answer for ours."""
    import argparse
    import subprocess

    from stella.cli.serve_cmd import _worker_command

    decoy = tmp_path / "stella"
    decoy.mkdir()
    (decoy / "__init__.py").write_text('raise ImportError("the stella package of another checkout")\n')
    config = ServiceConfig.from_env({"STELLA_HOME": str(tmp_path / "home")})
    command = _worker_command(argparse.Namespace(), config)
    ran = subprocess.run([*command, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert "--store" in ran.stdout and "another checkout" not in ran.stderr
