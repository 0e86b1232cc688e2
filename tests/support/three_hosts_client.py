"""The operator's side of the three-host scenario (tests/integration/test_three_hosts.py),
run as a separate process with the deployment's settings (PostgreSQL, the
cluster), printing JSON:

    python -m tests.support.three_hosts_client publish PREFIX COUNT QUEUE
    python -m tests.support.three_hosts_client count PREFIX
    python -m tests.support.three_hosts_client programs
"""

from __future__ import annotations

import json
import sys

import django


def main(argv: list[str]) -> None:
    django.setup()
    command, *args = argv
    if command == "publish":
        from queueworks.core.tasks import heavy_probe, probe

        prefix, count, queue = args[0], int(args[1]), args[2]
        for number in range(count):
            token = f"{prefix}-{number}"
            if queue == "heavy":
                heavy_probe.apply_async(args=[token], kwargs={"seconds": 0.1})
            else:
                # probe's route is main_worker; an explicit queue overrides it.
                probe.apply_async(args=[token], queue=queue, routing_key=queue)
        print(json.dumps({"sent": count}))
    elif command == "count":
        from django.db.models import Count

        from queueworks.core.models import ProbeRun

        runs = ProbeRun.objects.filter(token__startswith=f"{args[0]}-")
        finished = runs.filter(finished_at__isnull=False)
        print(json.dumps({
            "rows": runs.count(), "finished": finished.count(),
            "ran_twice": runs.filter(deliveries__gt=1).count(),
            "per_worker": dict(finished.values_list("hostname").annotate(n=Count("id"))),
        }))
    elif command == "programs":
        from queueworks.ops.programs import program_states

        print(json.dumps({name: state.state for name, state in program_states().items()}))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
