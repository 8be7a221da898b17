"""Runs through the API on both stores: events, idempotency, downloads, telemetry."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from stella.bundle.verify import verify_bundle
from tests.service.support import Service, assert_error_body


def _events(
    service: Service, token: str, run_id: str, last_event_id: int | None = None
) -> list[dict[str, Any]]:
    """Read an SSE stream to its end (the server closes it after the terminal event)."""
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with (
        service.client(token) as client,
        client.stream("GET", f"/api/export/runs/{run_id}/events", headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line:
                if "event" in current:
                    events.append(current)
                current = {}
            elif line.startswith("id: "):
                current["id"] = int(line[4:])
            elif line.startswith("event: "):
                current["event"] = line[7:]
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
    return events


def test_events_resume_with_last_event_id_and_miss_nothing(service: Service) -> None:
    token = service.token("acme")
    created = service.submit(token, {"profile": "json:raw", "selectors": ["kind=advisory"]})
    assert created.status_code == 202, created.text
    run_id = created.json()["runId"]
    everything = _events(service, token, run_id)  # follows the run live, to its end
    kinds = [event["event"] for event in everything]
    assert kinds[0] == "queued" and kinds[1] == "started" and kinds[-1] == "succeeded"
    assert "progress" in kinds and kinds.count("artifact_ready") == 2
    assert [event["id"] for event in everything] == list(range(1, len(everything) + 1))
    progress = [e["data"] for e in everything if e["event"] == "progress"]
    assert progress[-1]["percent"] == 100 and progress[-1]["recordsRead"] > 0
    for cut in (1, len(everything) // 2, len(everything) - 1):
        resumed = _events(service, token, run_id, last_event_id=cut)
        assert resumed == everything[cut:]
    assert _events(service, token, run_id, last_event_id=len(everything)) == []
    ready = {e["data"]["path"]: e["data"] for e in everything if e["event"] == "artifact_ready"}
    run = service.wait(token, run_id)
    assert ready[run["result"]["archive"]]["sha256"] == run["result"]["archiveDigest"]


def test_idempotency_key_replay_returns_the_first_run(service: Service) -> None:
    token = service.token("acme")
    key = uuid.uuid4().hex
    body = {"profile": "json:raw", "selectors": ["kind=vex"]}
    first = service.submit(token, body, **{"Idempotency-Key": key})
    again = service.submit(token, body, **{"Idempotency-Key": key})
    assert first.status_code == 202 and again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["runId"] == first.json()["runId"]
    other = service.submit(token, {**body, "selectors": ["kind=sbom"]}, **{"Idempotency-Key": key})
    assert other.status_code == 409 and other.json()["code"] == "ERR_EXPORT_CONFLICT"
    elsewhere = service.submit(service.token("globex"), body, **{"Idempotency-Key": key})
    assert elsewhere.status_code == 202 and elsewhere.json()["runId"] != first.json()["runId"]
    for tenant, response in (("acme", first), ("globex", elsewhere)):
        assert service.wait(service.token(tenant), response.json()["runId"])["status"] == "succeeded"


def test_download_cut_halfway_resumes_to_the_exact_bytes(
    service: Service, finished_run: dict[str, Any], tmp_path: Path
) -> None:
    token = service.token("acme", scopes=["export:download"])
    url = f"/api/export/runs/{finished_run['runId']}/download"
    digest = finished_run["result"]["archiveDigest"]
    with service.client(token) as client:
        whole = client.get(url)
        assert whole.status_code == 200 and whole.headers["etag"] == f'"{digest}"'
        assert "sha256:" + hashlib.sha256(whole.content).hexdigest() == digest
        half = len(whole.content) // 2
        with client.stream("GET", url) as response:  # the client goes away after half the bytes
            received = b""
            for chunk in response.iter_bytes(4096):
                received += chunk
                if len(received) >= half:
                    break
        rest = client.get(url, headers={"Range": f"bytes={len(received)}-", "If-Range": f'"{digest}"'})
        assert rest.status_code == 206
        assert (
            rest.headers["content-range"]
            == f"bytes {len(received)}-{len(whole.content) - 1}/{len(whole.content)}"
        )
        assert received + rest.content == whole.content
        stale = client.get(url, headers={"Range": "bytes=10-", "If-Range": '"sha256:0000"'})
        assert stale.status_code == 200 and stale.content == whole.content  # changed file: start again
        cached = client.get(url, headers={"If-None-Match": f'"{digest}"'})
        assert cached.status_code == 304 and cached.content == b""
        beyond = client.get(url, headers={"Range": f"bytes={len(whole.content) + 10}-"})
        assert beyond.status_code == 416
        assert beyond.headers["content-range"] == f"bytes */{len(whole.content)}"
        assert_error_body(beyond, "ERR_EXPORT_RANGE_NOT_SATISFIABLE")
        assert beyond.json()["details"]["size"] == len(whole.content)
        for malformed in ("lines=0-9", "bytes=9-3", "bytes=x"):
            refused = client.get(url, headers={"Range": malformed})
            assert refused.status_code == 400, malformed
            assert_error_body(refused, "ERR_EXPORT_USAGE")
        stale_beyond = client.get(url, headers={"Range": "bytes=99999999-", "If-Range": '"sha256:0"'})
        assert stale_beyond.status_code == 200  # a stale If-Range ignores the range, as RFC 9110 says
    archive = tmp_path / finished_run["result"]["archive"]
    archive.write_bytes(whole.content)
    report = verify_bundle(archive).report
    assert report.ok and report.export_id == finished_run["exportId"]


def test_manifest_provenance_and_single_files(service: Service, finished_run: dict[str, Any]) -> None:
    token = service.token("acme", scopes=["export:download"])
    base = f"/api/export/runs/{finished_run['runId']}"
    with service.client(token) as client:
        manifest = client.get(f"{base}/manifest")
        assert manifest.status_code == 200
        assert (
            "sha256:" + hashlib.sha256(manifest.content).hexdigest()
            == finished_run["result"]["manifestDigest"]
        )
        document = manifest.json()
        assert document["exportId"] == finished_run["exportId"] and document["tenant"] == "acme"
        provenance = client.get(f"{base}/provenance").json()
        subjects = {"sha256:" + subject["digest"]["sha256"] for subject in provenance["subject"]}
        assert finished_run["result"]["manifestDigest"] in subjects
        for entry in document["contents"]:
            served = client.get(f"{base}/files/{entry['path']}")
            assert served.status_code == 200
            assert "sha256:" + hashlib.sha256(served.content).hexdigest() == entry["digest"]
            assert served.headers["etag"] == f'"{entry["digest"]}"'
            part = client.get(f"{base}/files/{entry['path']}", headers={"Range": "bytes=0-9"})
            assert part.status_code == 206 and part.content == served.content[:10]
            past = client.get(
                f"{base}/files/{entry['path']}", headers={"Range": f"bytes={len(served.content)}-"}
            )
            assert (
                past.status_code == 416 and past.headers["content-range"] == f"bytes */{len(served.content)}"
            )
            assert_error_body(past, "ERR_EXPORT_RANGE_NOT_SATISFIABLE")
        for route in ("manifest", "provenance"):
            assert_error_body(client.get(f"{base}/{route}", headers={"Range": "bytes=-"}), "ERR_EXPORT_USAGE")
        for hostile in (
            "..%2F..%2Fservice%2Fruns.db",
            "data%2F..%2Fexport.json",
            "nope.json",
            "%2Fetc%2Fpasswd",
        ):
            refused = client.get(f"{base}/files/{hostile}")
            assert refused.status_code in (400, 404), hostile
        assert_error_body(client.get("/api/export/nowhere"), "ERR_EXPORT_NOT_FOUND")
        wrong_method = client.delete(f"{base}/manifest")
        assert wrong_method.status_code == 405
        assert_error_body(wrong_method, "ERR_EXPORT_USAGE")
        report = client.get(f"{base}/verification").json()
        assert report["ok"] is True and report["bundle"] == finished_run["exportId"]
        assert str(service.home) not in json.dumps(report)


def test_listing_pages_and_filters(service: Service, finished_run: dict[str, Any]) -> None:
    token = service.token("acme", scopes=["export:read"])
    seen: list[str] = []
    with service.client(token) as client:
        cursor = None
        while True:
            params = {"limit": "1", **({"cursor": cursor} if cursor else {})}
            page = client.get("/api/export/runs", params=params).json()
            seen += [run["runId"] for run in page["items"]]
            cursor = page["nextCursor"]
            if cursor is None:
                break
        everything = client.get("/api/export/runs", params={"limit": "200"}).json()["items"]
        assert seen == [run["runId"] for run in everything] and finished_run["runId"] in seen
        assert len(seen) == len(set(seen))
        succeeded = client.get("/api/export/runs", params={"status": "succeeded"}).json()["items"]
        assert succeeded and all(run["status"] == "succeeded" for run in succeeded)
        assert client.get("/api/export/runs", params={"profile": "trivy:db"}).json()["items"] == []
        bad = client.get("/api/export/runs", params={"status": "done"})
        assert bad.status_code == 400 and bad.json()["code"] == "ERR_EXPORT_USAGE"
        assert client.get("/api/export/runs", params={"cursor": "!!"}).status_code == 400


def test_bad_requests_name_the_field_and_queue_nothing(service: Service) -> None:
    token = service.token("acme")
    before = len(_all_runs(service, token))
    cases = [
        ({"profile": "json:nope"}, 400, "ERR_EXPORT_USAGE"),
        ({"profile": "mirror:delta", "options": {"base": "/etc"}}, 400, "ERR_EXPORT_USAGE"),
        ({"profile": "json:raw", "selectors": ["colour=red"]}, 400, "ERR_EXPORT_USAGE"),
        ({"profile": "json:raw", "encryptTo": ["rsa:/etc/passwd"]}, 400, "ERR_EXPORT_USAGE"),
        ({"profile": "json:raw", "surprise": 1}, 400, "ERR_EXPORT_USAGE"),
        ({"profile": "no-such-stored"}, 404, "ERR_EXPORT_NOT_FOUND"),
    ]
    for body, status, code in cases:
        response = service.submit(token, body)
        assert (response.status_code, response.json()["code"]) == (status, code), body
    raw = httpx.post(
        f"{service.url}/api/export/runs",
        content=b'{"profile": "json:raw", "profile": "trivy:db"}',
        headers={"Authorization": f"Bearer {token}"},
    )
    assert raw.status_code == 400 and "profile" in raw.json()["message"]
    empty_tenant = service.token("initech")
    missing = service.submit(empty_tenant, {"profile": "json:raw"})
    assert missing.status_code == 404  # no ledger for this tenant: refused before queueing
    assert len(_all_runs(service, token)) == before


def _all_runs(service: Service, token: str) -> list[dict[str, Any]]:
    with service.client(token) as client:
        items: list[dict[str, Any]] = client.get("/api/export/runs", params={"limit": "200"}).json()["items"]
        return items


def test_metrics_and_json_logs_carry_runs(service: Service, finished_run: dict[str, Any]) -> None:
    text = httpx.get(f"{service.url}/metrics").text
    assert 'exporter_run_duration_seconds_count{profile="json:raw",tenant="acme"}' in text
    line = next(
        entry
        for entry in text.splitlines()
        if entry.startswith('exporter_bundle_bytes_total{profile="json:raw",tenant="acme"}')
    )
    assert float(line.split()[-1]) >= finished_run["result"]["archiveBytes"]
    assert "exporter_queue_depth" in text and "exporter_runs_in_flight" in text
    with service.client(service.token("acme")) as client:
        response = client.get(
            f"/api/export/runs/{finished_run['runId']}", headers={"X-Request-Id": "trace-abcdef12"}
        )
    assert response.headers["x-trace-id"] == "trace-abcdef12"
    deadline = time.monotonic() + 10  # the access line is written just after the response is sent
    while True:
        lines = [json.loads(entry) for entry in service.log.read_text().splitlines() if entry.startswith("{")]
        if any(
            e.get("correlationId") == "trace-abcdef12" and e.get("event") == "http_request" for e in lines
        ):
            break
        assert time.monotonic() < deadline, "no JSON access log line carries the request's trace id"
        time.sleep(0.1)
    run_lines = {
        e["event"] for e in lines if e.get("correlationId") == finished_run["runId"] and "event" in e
    }
    assert {"plan", "read", "adapter", "write", "publish"} <= run_lines


def test_stored_profile_runs_with_its_revision(service: Service) -> None:
    token = service.token("acme")
    name = f"vex-only-{uuid.uuid4().hex[:6]}"
    with service.client(token) as client:
        created = client.post(
            "/api/export/profiles", json={"name": name, "profile": "json:raw", "selectors": ["kind=sbom"]}
        )
        assert created.status_code == 201 and created.json()["revision"] == 1
        updated = client.put(
            f"/api/export/profiles/{name}", json={"profile": "json:raw", "selectors": ["kind=vex"]}
        )
        assert updated.status_code == 200 and updated.json()["revision"] == 2
        assert client.get(f"/api/export/profiles/{name}", params={"revision": "1"}).json()["selectors"] == [
            "kind=sbom"
        ]
        listed = client.get("/api/export/profiles").json()
        assert [p["revision"] for p in listed["stored"] if p["name"] == name] == [2]
        bad = client.put(
            f"/api/export/profiles/{name}", json={"profile": "json:raw", "options": {"next-update": "1h"}}
        )
        assert bad.status_code == 400  # json:raw has no such option: refused, no revision 3
    run = service.submit(token, {"profile": name})
    assert run.status_code == 202, run.text
    assert run.json()["storedProfile"] == name and run.json()["selectors"] == ["kind=vex"]
    done = service.wait(token, run.json()["runId"])
    assert done["status"] == "succeeded" and set(done["result"]["counts"]) == {"vex"}


def test_stored_profile_targets_are_checked_kept_per_revision_and_inherited(
    service: Service, tmp_path: Path
) -> None:
    token = service.token("acme")
    name = f"to-share-{uuid.uuid4().hex[:6]}"
    share = tmp_path / f"share-{service.store_url.split(':', 1)[0]}-{name}"
    target = f"file://{share}?keep=2"
    body = {"name": name, "profile": "json:raw", "selectors": ["kind=advisory"], "targets": [target]}
    with service.client(token) as client:
        denied = client.post("/api/export/profiles", json={**body, "targets": ["oci://127.0.0.2:1/x/y:1"]})
        assert denied.status_code == 403 and denied.json()["code"] == "ERR_EXPORT_EGRESS_DENIED"
        assert client.get(f"/api/export/profiles/{name}").status_code == 404  # nothing stored
        created = client.post("/api/export/profiles", json=body)
        assert created.status_code == 201 and created.json()["targets"] == [target]
        refused = client.put(
            f"/api/export/profiles/{name}",
            json={"profile": "json:raw", "targets": ["oci://127.0.0.2:1/x/y:1"]},
        )
        assert refused.status_code == 403 and refused.json()["code"] == "ERR_EXPORT_EGRESS_DENIED"
        updated = client.put(f"/api/export/profiles/{name}", json={"profile": "json:raw"})
        assert updated.json()["revision"] == 2 and updated.json()["targets"] == []
        first = client.get(f"/api/export/profiles/{name}", params={"revision": "1"}).json()
        assert first["targets"] == [target]
        listed = client.get("/api/export/profiles").json()["stored"]
        assert [p["targets"] for p in listed if p["name"] == name] == [[]]
    with service.client(service.token("globex")) as other:
        assert other.get(f"/api/export/profiles/{name}").status_code == 404
        assert other.post("/api/export/runs", json={"profile": name}).status_code == 404
    overridden = service.submit(
        token, {"profile": name, "profileRevision": 1, "targets": ["oci://127.0.0.2:1/x/y:1"]}
    )
    assert overridden.status_code == 403  # a run's own targets are checked too
    elsewhere = tmp_path / f"elsewhere-{name}"
    replaced = service.submit(
        token, {"profile": name, "profileRevision": 1, "targets": [f"file://{elsewhere}"]}
    )
    assert replaced.status_code == 202, replaced.text
    (moved,) = service.wait(token, replaced.json()["runId"])["result"]["targets"]  # replaced, not added
    assert Path(moved["location"]).parent == elsewhere and moved["status"] == "published"
    run = service.submit(token, {"profile": name, "profileRevision": 1})
    assert run.status_code == 202, run.text
    done = service.wait(token, run.json()["runId"])
    assert done["status"] == "succeeded", done
    (published,) = done["result"]["targets"]
    assert published["status"] == "published" and published["kind"] == "file"
    assert Path(published["location"]).parent == share
    assert verify_bundle(Path(published["location"])).report.ok
