"""The scheduling core with an injected clock: slots, instances, downtime, bursts (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stella.errors import ConflictError, NotFoundError, UsageError
from stella.schedules.model import CatchUp, CronTrigger, EventTrigger, OnceTrigger, Schedule, parse_event
from stella.schedules.planning import next_slot, plan_time, slot_key
from stella.schedules.scheduler import Launch, Scheduler, record_ingest, record_webhook
from stella.schedules.store import Fire
from stella.service.store.schedules import SqlScheduleStore, mirror_run, open_schedule_store
from tests.service.conftest import new_database

DAY = datetime(2026, 12, 7, tzinfo=UTC)


class Clock:
    """A settable clock; ``skew`` models an instance whose clock runs behind."""

    def __init__(self, now: datetime, skew: timedelta = timedelta(0)) -> None:
        self.now, self.skew = now, skew

    def __call__(self) -> datetime:
        return self.now - self.skew


def schedule(
    name: str, trigger: object, *, catch_up: CatchUp = CatchUp.ONCE, tenant: str = "acme"
) -> Schedule:
    return Schedule(
        tenant=tenant,
        name=name,
        profile="json:raw",
        trigger=trigger,  # type: ignore[arg-type]
        created_at=DAY - timedelta(minutes=1),
        catch_up=catch_up,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store of each kind the service runs on (PostgreSQL: a database per test)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runs.db'}"
    return new_database(request.getfixturevalue("postgres_url"), f"sched_{uuid.uuid4().hex[:12]}")


@pytest.fixture()
def store(store_url: str) -> Iterator[SqlScheduleStore]:
    opened = open_schedule_store(store_url)
    yield opened
    opened.close()


def test_a_day_of_cron_slots_with_two_instances_fires_each_slot_exactly_once(
    store: SqlScheduleStore,
) -> None:
    store.create(schedule("hourly-ny", CronTrigger("15 * * * *", "America/New_York")))
    store.create(schedule("nightly-paris", CronTrigger("0 2 * * *", "Europe/Paris")))
    launched: list[Launch] = []
    clock_a, clock_b = Clock(DAY), Clock(DAY, skew=timedelta(seconds=-7))
    a = Scheduler(store, clock=clock_a, instance="a", launcher=lambda launch: launched.append(launch) or {})
    b = Scheduler(store, clock=clock_b, instance="b", launcher=lambda launch: launched.append(launch) or {})
    moment = DAY
    step = 0
    while moment <= DAY + timedelta(days=1):
        clock_a.now = clock_b.now = moment
        first, second = (a, b) if step % 2 else (b, a)  # alternate who ticks first
        first.tick()
        second.tick()
        moment += timedelta(minutes=15)
        step += 1

    keys = Counter((launch.fire.name, launch.fire.key) for launch in launched)
    assert all(count == 1 for count in keys.values()), keys
    hourly = sorted(k for name, k in keys if name == "hourly-ny")
    # 15 past every hour, New York time, is :15 UTC every hour too (offset is whole hours).
    assert hourly == [slot_key("cron", DAY + timedelta(hours=h, minutes=15)) for h in range(24)]
    # 02:00 in Paris in December (UTC+1) is 01:00 UTC.
    assert [k for name, k in keys if name == "nightly-paris"] == [slot_key("cron", DAY + timedelta(hours=1))]
    assert {launch.fire.instance for launch in launched} == {"a", "b"}  # both instances won some claims
    stored = store.fires("acme", limit=1000)
    assert len(stored) == 25 and {f.status for f in stored} == {"succeeded"}
    assert all(not launch.fire.late and launch.lag_seconds < 60 for launch in launched)


def test_concurrent_claims_of_one_slot_have_one_winner(store: SqlScheduleStore, store_url: str) -> None:
    store.create(schedule("hourly", CronTrigger("0 * * * *")))
    fire = Fire("acme", "hourly", slot_key("cron", DAY), DAY, DAY, "x")
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def claim(i: int) -> None:
        barrier.wait()
        own = open_schedule_store(store_url)  # each instance its own connections
        results.append(own.claim(Fire(**{**_fields(fire), "instance": f"i{i}"})))
        own.close()

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]
    assert len(store.fires("acme")) == 1


def _fields(fire: Fire) -> dict[str, object]:
    return {name: getattr(fire, name) for name in Fire.__dataclass_fields__}


@pytest.mark.parametrize("policy", [CatchUp.ONCE, CatchUp.SKIP])
def test_downtime_across_three_slots_follows_the_catch_up_policy(
    store: SqlScheduleStore, policy: CatchUp
) -> None:
    store.create(schedule("hourly", CronTrigger("0 * * * *"), catch_up=policy))
    clock = Clock(DAY + timedelta(seconds=10))
    launched: list[Launch] = []
    scheduler = Scheduler(
        store, clock=clock, instance="a", launcher=lambda launch: launched.append(launch) or {}
    )
    scheduler.tick()  # 00:00 on time
    clock.now = DAY + timedelta(hours=3, minutes=30)  # down across 01:00, 02:00 and 03:00
    scheduler.tick()
    clock.now = DAY + timedelta(hours=4, seconds=5)
    scheduler.tick()
    clock.now = DAY + timedelta(hours=4, minutes=30)
    scheduler.tick()

    fired = [(launch.fire.key, launch.fire.late, launch.fire.missed) for launch in launched]
    on_time = [(slot_key("cron", DAY), False, 0), (slot_key("cron", DAY + timedelta(hours=4)), False, 0)]
    if policy is CatchUp.ONCE:
        catch_up = (slot_key("cron", DAY + timedelta(hours=3)), True, 2)  # one run for the newest missed slot
        assert fired == [on_time[0], catch_up, on_time[1]]
        assert launched[1].lag_seconds == 30 * 60
    else:
        assert fired == on_time


def test_a_one_off_fires_once_and_only_after_its_time(store: SqlScheduleStore) -> None:
    at = DAY + timedelta(hours=6)
    store.create(schedule("once", OnceTrigger(at)))
    clock = Clock(DAY)
    scheduler = Scheduler(store, clock=clock, instance="a")
    fired = []
    for minutes in range(0, 24 * 60, 10):
        clock.now = DAY + timedelta(minutes=minutes)
        fired += scheduler.tick()
    assert [launch.fire.key for launch in fired] == [slot_key("at", at)]


def test_a_burst_of_50_ingests_fires_one_coalesced_run(store: SqlScheduleStore) -> None:
    store.create(schedule("on-advisories", parse_event("ingest:advisory", quiet_seconds=30)))
    store.create(schedule("on-vex", parse_event("ingest:vex")))
    store.create(schedule("on-anything", parse_event("ingest:any")))
    clock_a, clock_b = Clock(DAY), Clock(DAY, skew=timedelta(seconds=2))
    launched: list[Launch] = []
    instances = [
        Scheduler(store, clock=c, instance=n, launcher=lambda launch: launched.append(launch) or {})
        for c, n in ((clock_a, "a"), (clock_b, "b"))
    ]
    for second in range(0, 200):
        clock_a.now = clock_b.now = DAY + timedelta(seconds=second)
        if second < 50:
            record_ingest(store, "acme", ["advisory"], clock_a.now)  # one ingest a second
            if second == 10:
                record_ingest(store, "other", ["advisory", "vex"], clock_a.now)  # another tenant's
        if second % 3 == 0:
            for instance in instances:
                instance.tick()
    names = Counter(launch.fire.name for launch in launched)
    assert names == {"on-advisories": 1, "on-anything": 1}
    advisory = next(launch for launch in launched if launch.fire.name == "on-advisories")
    assert advisory.fire.missed == 49  # 50 ingests, one run
    assert advisory.fire.slot == DAY + timedelta(seconds=49 + 30)  # quiet for 30 s after the last one
    # A later ingest is a new burst: one more run.
    clock_a.now = clock_b.now = DAY + timedelta(seconds=300)
    record_ingest(store, "acme", ["advisory"], clock_a.now)
    clock_a.now = clock_b.now = DAY + timedelta(seconds=340)
    for instance in instances:
        instance.tick()
    assert Counter(launch.fire.name for launch in launched)["on-advisories"] == 2


def test_a_steady_trickle_fires_after_the_max_delay(store: SqlScheduleStore) -> None:
    store.create(
        schedule("on-advisories", parse_event("ingest:advisory", quiet_seconds=30, max_delay_seconds=120))
    )
    clock = Clock(DAY)
    scheduler = Scheduler(store, clock=clock, instance="a")
    fired = []
    for second in range(0, 300, 5):
        clock.now = DAY + timedelta(seconds=second)
        if second % 20 == 0:
            record_ingest(store, "acme", ["advisory"], clock.now)  # never quiet for 30 s
        fired += scheduler.tick()
    assert [launch.fire.slot for launch in fired] == [
        DAY + timedelta(seconds=120),
        DAY + timedelta(seconds=140 + 120),
    ]


def test_pause_resume_and_webhooks(store: SqlScheduleStore) -> None:
    store.create(schedule("hourly", CronTrigger("0 * * * *")))
    store.create(schedule("hook", parse_event("webhook", quiet_seconds=0)))
    clock = Clock(DAY + timedelta(minutes=30))
    scheduler = Scheduler(store, clock=clock, instance="a")
    store.set_paused("acme", "hourly", True, clock.now)
    clock.now = DAY + timedelta(hours=3, minutes=30)
    assert scheduler.tick() == []  # paused: nothing fires
    store.set_paused("acme", "hourly", False, clock.now)
    assert scheduler.tick() == []  # resuming never catches up the pause
    with pytest.raises(UsageError):
        record_webhook(store, "acme", "hourly", clock.now)
    with pytest.raises(NotFoundError):
        record_webhook(store, "other", "hook", clock.now)  # another tenant's schedule is not found
    record_webhook(store, "acme", "hook", clock.now)
    assert [launch.fire.name for launch in scheduler.tick()] == ["hook"]
    manual = scheduler.run_now("acme", "hourly")
    assert manual.fire.key.startswith("manual:")
    again = scheduler.run_now("acme", "hourly")  # the same clock reading: a second run, not "already run"
    assert again.fire.key == f"{manual.fire.key}#2"
    assert {f.key for f in store.fires("acme", "hourly")} >= {manual.fire.key, again.fire.key}
    with pytest.raises(ConflictError):
        store.create(schedule("hourly", CronTrigger("5 * * * *")))
    store.delete("acme", "hourly")
    with pytest.raises(NotFoundError):
        store.get("acme", "hourly")


def test_failed_launches_are_recorded_with_their_code(store: SqlScheduleStore) -> None:
    store.create(schedule("hourly", CronTrigger("0 * * * *")))

    def fail(launch: Launch) -> dict[str, object]:
        raise NotFoundError("no ledger for tenant acme")

    scheduler = Scheduler(store, clock=Clock(DAY + timedelta(seconds=1)), instance="a", launcher=fail)
    scheduler.tick()
    (fire,) = store.fires("acme")
    assert fire.status == "failed" and fire.result["error"]["code"] == "ERR_EXPORT_NOT_FOUND"


@pytest.mark.parametrize(
    ("trigger", "message"),
    [
        (lambda: CronTrigger("61 * * * *"), "cron"),
        (lambda: CronTrigger("0 2 * * *", "Mars/Olympus"), "time zone"),
        (lambda: parse_event("ingest:malware"), "ingest:<kind>"),
        (lambda: OnceTrigger(datetime(2026, 1, 1)), "time zone"),
    ],
)
def test_bad_triggers_are_usage_errors_naming_the_field(trigger: object, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        trigger()  # type: ignore[operator]


def test_plan_time_is_pure_and_dst_aware() -> None:
    paris = CronTrigger("30 2 * * *", "Europe/Paris")
    # 2027-03-28: clocks jump 02:00 -> 03:00 in Paris; no 02:30 exists that day.
    start = datetime(2027, 3, 27, 12, tzinfo=UTC)
    due = plan_time(paris, start, datetime(2027, 3, 28, 12, tzinfo=UTC), CatchUp.ONCE)
    assert due is not None and due.late
    summer = plan_time(paris, start, datetime(2027, 3, 29, 0, 30, 5, tzinfo=UTC), CatchUp.SKIP)
    assert summer is not None and summer.slot == datetime(2027, 3, 29, 0, 30, tzinfo=UTC)  # UTC+2 now


def test_next_slot_is_in_the_triggers_zone_and_none_when_nothing_is_planned() -> None:
    paris = CronTrigger("0 2 * * *", "Europe/Paris")
    winter = datetime(2027, 1, 10, 12, tzinfo=UTC)
    assert next_slot(paris, winter) == datetime(2027, 1, 11, 1, tzinfo=UTC)  # 02:00 CET
    assert next_slot(paris, datetime(2027, 7, 10, 12, tzinfo=UTC)) == datetime(2027, 7, 11, 0, tzinfo=UTC)
    once = OnceTrigger(datetime(2027, 1, 10, 13, tzinfo=UTC))
    assert next_slot(once, winter) == once.at
    assert next_slot(once, once.at) is None  # already passed (or firing now)
    assert next_slot(EventTrigger("webhook"), winter) is None


def test_a_service_slot_takes_its_runs_outcome_once_and_keeps_it() -> None:
    fire = Fire(
        "acme", "nightly", "manual:x", DAY, DAY, "service@a", status="succeeded", result={"runId": "r"}
    )
    ok = {"targets": [{"target": "file:///s", "kind": "file", "status": "published", "attempts": 1}]}
    bad = {
        "targets": [
            {**ok["targets"][0], "status": "failed", "error": {"code": "ERR_EXPORT_REMOTE", "message": "no"}}
        ]
    }

    def row(
        status: str, result: dict[str, object] | None = None, error: str | None = None
    ) -> dict[str, object]:
        return {
            "id": "r",
            "status": status,
            "export_id": "e",
            "result": json.dumps(result or {}),
            "error": error,
        }

    assert mirror_run(fire, None) is fire  # a slot the CLI launched keeps its own record
    assert mirror_run(fire, row("queued")).status == mirror_run(fire, row("running")).status == "launched"
    assert mirror_run(fire, row("succeeded", ok)).status == "succeeded"
    expired = mirror_run(fire, row("expired", ok))  # the bundle expired later: the outcome stays
    assert expired.status == "succeeded" and expired.result["runStatus"] == "expired"
    refused = mirror_run(fire, row("succeeded", bad))
    assert refused.status == "failed" and refused.result["error"]["code"] == "ERR_EXPORT_REMOTE"
    assert "1 of 1 targets failed" in refused.result["error"]["message"]
    error = json.dumps({"code": "ERR_EXPORT_PIPELINE", "message": "boom", "details": {}})
    assert mirror_run(fire, row("failed", error=error)).result["error"]["code"] == "ERR_EXPORT_PIPELINE"
    assert mirror_run(fire, row("cancelled")).status == "cancelled"


def test_an_orchestrator_fires_a_given_slot_once_under_the_schedulers_own_key(
    store: SqlScheduleStore,
) -> None:
    """``run-now --slot`` (what an Airflow DAG runs): the tick's key, so neither double-fires the other."""
    store.create(schedule("nightly-paris", CronTrigger("0 2 * * *", "Europe/Paris")))
    store.create(schedule("quarter", OnceTrigger(DAY + timedelta(hours=5))))
    store.create(schedule("on-advisories", parse_event("ingest:advisory")))
    launched: list[Launch] = []
    clock = Clock(DAY + timedelta(hours=1, seconds=20))
    airflow = Scheduler(store, clock=clock, instance="airflow", launcher=lambda x: launched.append(x) or {})
    slot = DAY + timedelta(hours=1)  # 02:00 in Paris in December
    launch = airflow.run_slot("acme", "nightly-paris", slot)
    assert launch.fire.key == slot_key("cron", slot) and not launch.fire.late
    # The embedded scheduler ticking at the same moment finds the slot claimed.
    assert Scheduler(store, clock=clock, instance="tick").tick() == []
    with pytest.raises(UsageError, match="already fired by airflow"):
        airflow.run_slot("acme", "nightly-paris", slot)
    for wrong in (slot + timedelta(minutes=1), slot + timedelta(hours=1), slot + timedelta(seconds=30)):
        with pytest.raises(UsageError, match="not a slot"):
            airflow.run_slot("acme", "nightly-paris", wrong)
    clock.now = DAY + timedelta(days=1)
    once = airflow.run_slot("acme", "quarter", DAY + timedelta(hours=5))
    assert once.fire.key == slot_key("at", DAY + timedelta(hours=5)) and once.fire.late
    with pytest.raises(UsageError, match="fires on events"):
        airflow.run_slot("acme", "on-advisories", DAY)
    store.set_paused("acme", "nightly-paris", True, clock.now)
    with pytest.raises(UsageError, match="paused"):
        airflow.run_slot("acme", "nightly-paris", DAY + timedelta(days=1, hours=1))
    assert [x.fire.key for x in launched] == [launch.fire.key, once.fire.key]
    assert store.fire("acme", "nightly-paris", launch.fire.key).instance == "airflow"
