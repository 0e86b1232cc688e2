"""The checks behind `python manage.py doctor`.

Each check turns one troubleshooting step of the Celery/RabbitMQ guides into a
finding: OK, WARN or FAIL, a one-line message and, unless OK, the fix.
The checks live by subject in queueworks/doctor/checks_*.py; findings.py holds what
they share.
"""

from __future__ import annotations

import time
from pathlib import Path

from queueworks.doctor.checks_broker import (  # noqa: F401  (re-exported)
    check_broker, check_management, check_queues, check_worker_replies,
)
from queueworks.doctor.checks_rabbitmq4 import check_rabbitmq4_readiness
from queueworks.doctor.checks_programs import check_beat, check_programs  # noqa: F401
from queueworks.doctor.checks_settings import (  # noqa: F401
    check_credentials, check_django, check_eager, check_redis_guarantees, check_result_backend,
    check_time_zones,
)
from queueworks.doctor.findings import FAIL, OK, WARN, Context, Finding, _describe  # noqa: F401


CHECKS = (
    check_django, check_broker, check_management, check_queues, check_worker_replies,
    check_rabbitmq4_readiness, check_programs, check_beat, check_result_backend, check_time_zones, check_eager,
    check_credentials, check_redis_guarantees,
)


def diagnose(*, broker_url: str, run_dir: Path, timeout: float, debug: bool,
             host: str | None = None) -> list[Finding]:
    from queueworks.core.inventory import declared
    from queueworks.doctor.broker import first_broker_url

    # With a cluster's failover list, the doctor examines the first node.
    ctx = Context(broker_url=first_broker_url(broker_url), run_dir=run_dir, timeout=timeout,
                  debug=debug, inventory=declared(), host=host)
    findings: list[Finding] = []
    for check in CHECKS:
        started = time.monotonic()
        try:
            findings += check(ctx)
        except Exception as error:  # noqa: BLE001 - a broken check is itself a finding
            findings.append(Finding(check.__name__.removeprefix("check_"), FAIL,
                                    f"check crashed: {_describe(error)}",
                                    "report this; run with --traceback for details"))
        if time.monotonic() - started > 10 * timeout:
            findings.append(Finding(check.__name__.removeprefix("check_"), WARN,
                                    f"took {time.monotonic() - started:.0f} s", ""))
    return findings
