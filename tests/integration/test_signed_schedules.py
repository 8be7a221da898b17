"""Scheduled slots are signed with the launcher's key, judged by ``stella export verify --key`` and openssl.

A schedule created with ``--sign`` fails its slot (recorded, nothing published) when the
launcher has no key; a schedule left at the default is signed whenever a key is given.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from stella.schedules.scheduler import record_webhook
from stella.service.store.schedules import open_schedule_store
from tests.integration.conftest import Ran
from tests.integration.signed_fixtures import Keys
from tests.support import assert_trusted, ingest


def test_a_ticked_slot_is_signed_with_the_launchers_key_and_fails_without_one(
    cli: Callable[..., Ran], signing_keys: Keys, shared_data: Path, tmp_path: Path
) -> None:
    ledger, out = tmp_path / "ledger", tmp_path / "bundles"
    ingest(ledger, shared_data / "vex")
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    common = [
        "--tenant",
        "acme",
        "--profile",
        "json:raw",
        "--on",
        "webhook",
        "--quiet",
        "0",
        "--store",
        store,
    ]
    cli("export", "schedule", "create", "strict", *common, "--sign", check=True)
    cli("export", "schedule", "create", "usual", *common, check=True)
    listed = json.loads(cli("export", "schedule", "list", "--store", store, "--json", check=True).stdout)
    assert {s["name"]: s["sign"] for s in listed["schedules"]} == {"strict": True, "usual": None}
    schedules = open_schedule_store(store)
    launch = ["--store", store, "--ledger", str(ledger), "--out", str(out), "--json"]

    record_webhook(schedules, "acme", "strict", datetime.now(UTC))
    refused = cli("export", "schedule", "tick", *launch)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    (fire,) = json.loads(refused.stdout)["fires"]
    assert fire["status"] == "failed" and fire["result"]["error"]["code"] == "ERR_EXPORT_USAGE"
    assert "--sign-key" in fire["result"]["error"]["message"]
    assert not (out / "acme").exists() or not any((out / "acme").iterdir())  # nothing unsigned published
    assert schedules.fire("acme", "strict", fire["key"]).status == "failed"  # recorded in the store

    for name in ("strict", "usual"):
        record_webhook(schedules, "acme", name, datetime.now(UTC))
    key = f"file://{signing_keys.ec_key}"
    ran = cli("export", "schedule", "tick", *launch, "--sign-key", key, check=True)
    fires = json.loads(ran.stdout)["fires"]
    assert sorted(f["schedule"] for f in fires) == ["strict", "usual"]
    for fired in fires:
        assert fired["status"] == "succeeded" and fired["result"]["signedBy"]
        assert_trusted(Path(fired["result"]["bundle"]), signing_keys.ec_pub, tmp_path)
