"""The Console in a real headless Chromium (Debian ``chromium``, driven by Playwright).

An operator signs in, starts a json:raw run, watches it succeed live (SSE), downloads
the bundle and checks its digest; a read-only user sees no start button, and a forged
start (the hidden form shown by hand) is refused by the API with the error shown.
Schedules: an operator creates one, runs it now, sees the slot take its run's outcome
(with its target's publish), pauses and deletes it, and never sees another tenant's;
a read-only user sees schedules without any action.
Screenshots are kept under .cache/screenshots/ (test artifacts).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service.support import Service
from tests.support import CACHE, require

SHOTS = CACHE / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium")
    require(chromium is not None, "Debian chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _sign_in(page: Any, service: Service, token: str) -> None:
    page.goto(f"{service.url}/console/")
    page.fill("#token", token)
    page.click("#sign-in-button")
    page.wait_for_selector("#workspace:not([hidden])")
    page.wait_for_selector("#profiles tbody tr")


@pytest.mark.slow
@pytest.mark.parametrize("service", ["sqlite"], indirect=True)
def test_operator_runs_watches_and_downloads(browser: Any, service: Service, tmp_path: Path) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.on("request", lambda request: _loopback_only(request.url, service.url))
    _sign_in(page, service, service.token("acme"))
    assert page.is_visible("#start-run")
    page.select_option("#run-profile", "json:raw")
    page.fill("#run-selectors", "kind=advisory")
    page.click("#start-run")
    page.wait_for_selector("#events li[data-type='started']")
    page.wait_for_selector("#run-status.status-succeeded", timeout=120_000)
    # The status comes from the run fetched after each event; a quick run can already read
    # succeeded there while its own terminal event is still on the way down the stream.
    page.wait_for_selector("#events li[data-type='succeeded']", timeout=30_000)
    events = page.locator("#events li").evaluate_all("items => items.map(i => i.dataset.type)")
    assert events[0] == "queued" and events[-1] == "succeeded" and "progress" in events
    run_id = page.text_content("#run-id")
    with service.client(service.token("acme")) as client:
        run = client.get(f"/api/export/runs/{run_id}").json()
    with page.expect_download() as info:
        page.click("#download")
    saved = tmp_path / "bundle.tar.zst"
    info.value.save_as(saved)
    digest = "sha256:" + hashlib.sha256(saved.read_bytes()).hexdigest()
    assert digest == run["result"]["archiveDigest"]
    assert page.text_content("#download-digest") == digest
    assert page.text_content("#download-check") == "digest verified"
    page.click("#verify")
    page.wait_for_selector("#verify-result:not([hidden])")
    assert page.text_content("#verify-result").startswith("Verified:")
    page.screenshot(path=str(SHOTS / "console-run.png"), full_page=True)
    context.close()


@pytest.mark.slow
@pytest.mark.parametrize("service", ["sqlite"], indirect=True)
def test_read_only_user_sees_no_start_button_and_forgery_is_refused(
    browser: Any, service: Service, tmp_path: Path
) -> None:
    target = f"file://{tmp_path / 'share'}"
    with service.client(service.token("acme")) as client:
        stored = client.post(
            "/api/export/profiles",
            json={"name": "console-shared", "profile": "json:raw", "targets": [target]},
        )
        assert stored.status_code in (201, 409), stored.text
        if stored.status_code == 409:  # the session's service outlives one test: a new revision instead
            client.put(
                "/api/export/profiles/console-shared", json={"profile": "json:raw", "targets": [target]}
            )
    context = browser.new_context(viewport={"width": 1280, "height": 700})
    page = context.new_page()
    _sign_in(page, service, service.token("acme", scopes=["export:read", "export:download"]))
    row = page.locator("#profiles tbody tr", has_text="console-shared")
    assert row.locator("td").last.text_content() == target  # the stored profile's targets are shown
    assert not page.is_visible("#start-run")
    assert page.is_visible("#read-only-note")
    page.evaluate("document.getElementById('start-form').hidden = false")  # forge the UI
    page.select_option("#run-profile", "json:raw")
    page.click("#start-run")
    page.wait_for_selector("#error:not([hidden])")
    assert page.text_content("#error-code") == "ERR_EXPORT_FORBIDDEN"
    assert "export:run" in page.text_content("#error-message")
    page.screenshot(path=str(SHOTS / "console-read-only.png"), full_page=True)
    context.close()


@pytest.mark.slow
@pytest.mark.parametrize("service", ["sqlite"], indirect=True)
def test_operator_schedules_runs_now_pauses_and_deletes(
    browser: Any, service: Service, tmp_path: Path
) -> None:
    share = tmp_path / "share"
    with service.client(service.token("globex")) as other:
        hidden = {"name": "globex-secret", "profile": "json:raw", "cron": "0 3 * * *"}
        assert other.post("/api/export/schedules", json=hidden).status_code == 201
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.on("request", lambda request: _loopback_only(request.url, service.url))
    page.on("dialog", lambda dialog: dialog.accept())  # the delete confirmation
    _sign_in(page, service, service.token("acme"))
    page.fill("#schedule-name", "console-nightly")
    page.select_option("#schedule-profile", "json:raw")
    page.fill("#schedule-cron", "0 2 * * *")
    page.fill("#schedule-timezone", "Europe/Paris")
    page.fill("#schedule-selectors", "kind=vex")
    page.fill("#schedule-targets", f"file://{share}?keep=2")
    page.select_option("#schedule-catch-up", "skip")
    page.click("#create-schedule")
    row = page.locator("#schedules tbody tr[data-schedule='console-nightly']")
    row.wait_for()
    cells = row.locator("td")
    assert cells.nth(1).text_content() == "cron 0 2 * * * (Europe/Paris)"
    assert cells.nth(2).text_content().endswith(("T01:00:00Z", "T00:00:00Z"))  # 02:00 Paris, in UTC
    assert cells.nth(3).text_content() == "-" and cells.nth(4).text_content() == "active"
    assert page.locator("#schedules tbody tr[data-schedule='globex-secret']").count() == 0
    with service.client(service.token("acme")) as client:
        stored = client.get("/api/export/schedules/console-nightly").json()
    assert stored["catchUp"] == "skip" and stored["selectors"] == ["kind=vex"]

    page.fill("#schedule-name", "console-on-vex")  # an event schedule with its coalescing window
    page.check("input[name='schedule-trigger'][value='on']")
    page.select_option("#schedule-on", "ingest:vex")
    page.fill("#schedule-quiet", "5")
    page.fill("#schedule-max-delay", "60")
    page.click("#create-schedule")
    event_row = page.locator("#schedules tbody tr[data-schedule='console-on-vex']")
    event_row.wait_for()
    assert event_row.locator("td").nth(1).text_content() == "on ingest:vex (quiet 5 s)"
    assert event_row.locator("td").nth(2).text_content() == "-"  # events have no next slot
    event_row.locator("button[data-action='delete']").click()
    event_row.wait_for(state="detached")

    row.locator("button[data-action='run']").click()
    row.locator(".last-fire[data-status='launched']").wait_for()  # queued: not an outcome yet
    row.locator(".last-fire[data-status='succeeded']").wait_for(timeout=120_000)
    fire_text = row.locator(".last-fire").text_content()
    assert fire_text.startswith("succeeded · manual:") and "1/1 targets published" in fire_text
    run_id = row.locator(".last-fire").get_attribute("data-run-id")
    row.locator(".last-fire").click()  # the slot opens its run
    page.wait_for_selector("#run-status.status-succeeded")
    assert page.text_content("#run-id") == run_id
    with service.client(service.token("acme")) as client:
        run = client.get(f"/api/export/runs/{run_id}").json()
    assert run["result"]["targets"][0]["status"] == "published"
    assert Path(run["result"]["targets"][0]["location"]).parent == share

    row.locator("button[data-action='pause']").click()
    row.locator("td.schedule-state", has_text="paused").wait_for()
    assert row.locator("button[data-action='resume']").is_visible()
    page.screenshot(path=str(SHOTS / "console-schedules.png"), full_page=True)
    row.locator("button[data-action='delete']").click()
    row.wait_for(state="detached")
    with service.client(service.token("acme")) as client:
        assert client.get("/api/export/schedules/console-nightly").status_code == 404
    with service.client(service.token("globex")) as other:
        assert other.delete("/api/export/schedules/globex-secret").status_code == 204
    context.close()


@pytest.mark.slow
@pytest.mark.parametrize("service", ["sqlite"], indirect=True)
def test_read_only_user_sees_schedules_without_actions(browser: Any, service: Service) -> None:
    with service.client(service.token("acme")) as client:
        body = {"name": "console-watched", "profile": "json:raw", "on": "webhook"}
        assert client.post("/api/export/schedules", json=body).status_code == 201
    context = browser.new_context(viewport={"width": 1280, "height": 700})
    page = context.new_page()
    _sign_in(page, service, service.token("acme", scopes=["export:read", "export:download"]))
    row = page.locator("#schedules tbody tr[data-schedule='console-watched']")
    row.wait_for()
    assert row.locator("td").nth(1).text_content() == "on webhook (quiet 30 s)"
    assert row.locator("button").count() == 0
    assert not page.is_visible("#create-schedule") and page.is_visible("#schedules-read-only")
    page.evaluate("document.getElementById('schedule-form').hidden = false")  # forge the UI
    page.fill("#schedule-name", "forged")
    page.fill("#schedule-cron", "0 2 * * *")
    page.click("#create-schedule")
    page.wait_for_selector("#error:not([hidden])")
    assert page.text_content("#error-code") == "ERR_EXPORT_FORBIDDEN"
    context.close()
    with service.client(service.token("acme")) as client:
        assert client.get("/api/export/schedules/forged").status_code == 404
        assert client.delete("/api/export/schedules/console-watched").status_code == 204


def _loopback_only(url: str, base: str) -> None:
    assert url.startswith(base) or url.startswith(("blob:", "data:")), f"the Console fetched {url}"
