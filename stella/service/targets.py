"""The service's distribution targets and its scheduler, both from the service's own configuration.

The egress allowlist of the service is ``$STELLA_EGRESS_ALLOWLIST`` of the process that
serves and works (an API caller cannot widen it); registry credentials come from
``--username``'s service equivalent, ``$STELLA_REGISTRY_USER`` with
``$STELLA_REGISTRY_PASSWORD``. A schedule fired by the service becomes a queued run, signed
with the service's own key (``--sign-key``) unless the schedule says ``sign: false``.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from stella.bundle.encrypt import parse_encryption
from stella.errors import UsageError
from stella.schedules.scheduler import Launch, Launcher, Scheduler
from stella.service.config import ServiceConfig
from stella.service.store.interface import RunStore
from stella.service.store.schedules import SqlScheduleStore
from stella.targets.distribute import check_targets, parse_target
from stella.targets.egress import policy_from
from stella.targets.interface import Target
from stella.targets.oci import registry_credentials

__all__ = ["USER_ENV", "service_scheduler", "service_targets"]

USER_ENV = "STELLA_REGISTRY_USER"


def service_targets(urls: Sequence[str]) -> list[Target]:
    """Parse and check target URLs under the service's egress policy (refusals before any work)."""
    policy = policy_from((), os.environ)
    credentials = registry_credentials(os.environ.get(USER_ENV) or None, os.environ)
    targets = [parse_target(url, policy, credentials=credentials) for url in urls]
    check_targets(targets)
    return targets


def _queue(config: ServiceConfig, store: RunStore) -> Launcher:
    """A launch becomes a queued run with the schedule's frozen parameters."""

    def launch(item: Launch) -> dict[str, Any]:
        schedule = item.schedule
        service_targets(schedule.targets)  # the allowlist may have changed since the schedule was stored
        parse_encryption(list(schedule.encrypt_to), environ={})
        if schedule.sign and not config.sign_key:
            # The slot fails (recorded on the fire) rather than publish an unsigned bundle.
            raise UsageError(
                f"schedule {schedule.name!r} asks for a signature but the service has no signing key "
                "(stella serve --sign-key or $STELLA_SERVICE_SIGN_KEY)",
                details={"tenant": schedule.tenant, "schedule": schedule.name},
            )
        options = dict(option.split("=", 1) for option in schedule.options)
        run, _ = store.create_run(
            tenant=schedule.tenant,
            profile=schedule.profile,
            params={
                "storedProfile": None,
                "selectors": list(schedule.selectors),
                "options": options,
                "encryptTo": list(schedule.encrypt_to),
                "sign": schedule.sign is not False and bool(config.sign_key),
                "targets": list(schedule.targets),
                "schedule": schedule.name,
                "slot": item.fire.key,
                "submittedBy": f"schedule:{schedule.name}",
            },
            idempotency_key=None,
            max_active=config.max_active_runs,
            retry_after=config.retry_after,
        )
        return {"runId": run.id}

    return launch


def service_scheduler(config: ServiceConfig, store: RunStore, schedules: SqlScheduleStore) -> Scheduler:
    """The scheduler every API process and worker of this service shares through the store."""
    return Scheduler(
        schedules,
        clock=lambda: datetime.now(UTC),
        instance=f"service@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}",
        launcher=_queue(config, store),
    )
