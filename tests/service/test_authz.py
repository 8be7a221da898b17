"""The authorization matrix: every endpoint x {no token, expired, bad signature, wrong
tenant, missing scope, right scope}, on both stores.

Another tenant's run, profile or file answers 404 (never 403) and no response to a
caller of another tenant holds anything of tenant acme's.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stella.service.auth import SCOPES, LocalKeys, issue_token
from tests.service.support import Service, assert_error_body

MARKER = "acme-private-marker-7f3a"


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    scope: str
    ok: int
    collection: bool = False  # answers for the caller's own tenant instead of 404
    body: str | None = None


ENDPOINTS = [
    Endpoint("GET", "/api/export/profiles", "export:read", 200, collection=True),
    Endpoint(
        "POST", "/api/export/profiles", "export:profile:manage", 201, collection=True, body="new-profile"
    ),
    Endpoint("GET", "/api/export/profiles/{profile}", "export:read", 200),
    Endpoint("PUT", "/api/export/profiles/{profile}", "export:profile:manage", 200, body="profile"),
    Endpoint("POST", "/api/export/runs", "export:run", 202, collection=True, body="run"),
    Endpoint("GET", "/api/export/runs", "export:read", 200, collection=True),
    Endpoint("GET", "/api/export/runs/{run}", "export:read", 200),
    Endpoint("POST", "/api/export/runs/{run}/cancel", "export:run", 202),
    Endpoint("GET", "/api/export/runs/{run}/events", "export:read", 200),
    Endpoint("GET", "/api/export/runs/{run}/manifest", "export:download", 200),
    Endpoint("GET", "/api/export/runs/{run}/provenance", "export:download", 200),
    Endpoint("GET", "/api/export/runs/{run}/download", "export:download", 200),
    Endpoint("GET", "/api/export/runs/{run}/verification", "export:download", 200),
    Endpoint("GET", "/api/export/runs/{run}/files/export.json", "export:download", 200),
]
CASES = ["no-token", "expired", "bad-signature", "wrong-tenant", "missing-scope", "right-scope"]


@pytest.fixture(scope="session")
def acme_world(service: Service, finished_run: dict[str, Any]) -> dict[str, Any]:
    """acme's finished run and a stored profile carrying a marker no other tenant may see."""
    profile = f"nightly-{uuid.uuid4().hex[:8]}"
    with service.client(service.token("acme")) as client:
        response = client.post(
            "/api/export/profiles",
            json={
                "name": profile,
                "profile": "json:raw",
                "selectors": ["kind=advisory"],
                "description": MARKER,
            },
        )
    assert response.status_code == 201, response.text
    return {"run": finished_run, "profile": profile}


def _token(service: Service, case: str, scope: str) -> str | None:
    if case == "no-token":
        return None
    if case == "expired":
        return service.token("acme", now=time.time() - 7200, ttl=60)
    if case == "bad-signature":
        forged = LocalKeys(Ed25519PrivateKey.generate())
        return issue_token(forged, tenants=["acme"], scopes=SCOPES, subject="mallory", ttl_seconds=600)
    if case == "wrong-tenant":
        return service.token("globex")
    if case == "missing-scope":
        return service.token("acme", scopes=[s for s in SCOPES if s != scope])
    return service.token("acme", scopes=[scope])


def _body(kind: str | None, world: dict[str, Any]) -> dict[str, Any] | None:
    if kind == "new-profile":
        return {"name": f"p-{uuid.uuid4().hex[:10]}", "profile": "json:raw"}
    if kind == "profile":
        return {"profile": "json:raw", "selectors": ["kind=vex"], "description": MARKER}
    if kind == "run":
        return {"profile": "json:raw", "selectors": ["kind=sbom"]}
    return None


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
def test_authorization_matrix(
    service: Service, acme_world: dict[str, Any], endpoint: Endpoint, case: str
) -> None:
    run = acme_world["run"]
    path = endpoint.path.format(run=run["runId"], profile=acme_world["profile"])
    token = _token(service, case, endpoint.scope)
    with service.client(token) as client:
        response = client.request(endpoint.method, path, json=_body(endpoint.body, acme_world))
    expected = {
        "no-token": 401,
        "expired": 401,
        "bad-signature": 401,
        "missing-scope": 403,
        "right-scope": endpoint.ok,
        "wrong-tenant": endpoint.ok if endpoint.collection else 404,
    }[case]
    assert response.status_code == expected, f"{case}: {response.status_code} {response.text[:300]}"
    if expected >= 400:
        codes = {401: "ERR_EXPORT_UNAUTHENTICATED", 403: "ERR_EXPORT_FORBIDDEN", 404: "ERR_EXPORT_NOT_FOUND"}
        assert_error_body(response, codes[expected])
    if expected == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    if case != "right-scope" and case != "missing-scope":
        text = response.text
        for secret in (
            MARKER,
            run["exportId"],
            run["result"]["archiveDigest"],
            run["result"]["manifestDigest"],
        ):
            assert secret not in text
        if case == "wrong-tenant" and endpoint.collection and response.status_code < 300:
            assert '"acme"' not in text


def test_tenant_header_must_name_a_tenant_of_the_token(
    service: Service, finished_run: dict[str, Any]
) -> None:
    both = service.token("acme", "globex")
    with service.client(both) as client:
        assert client.get("/api/export/runs").status_code == 403  # several tenants: must choose
        mine = client.get(f"/api/export/runs/{finished_run['runId']}", headers={"X-Stella-Tenant": "acme"})
        assert mine.status_code == 200
        other = client.get(f"/api/export/runs/{finished_run['runId']}", headers={"X-Stella-Tenant": "globex"})
        assert other.status_code == 404
    with service.client(service.token("globex"), **{"X-Stella-Tenant": "acme"}) as client:
        refused = client.get("/api/export/runs")
        assert refused.status_code == 403 and refused.json()["code"] == "ERR_EXPORT_FORBIDDEN"
