"""Which running programs a topology change concerns.

A program loads the topology once, at start: the web server and beat hold the
routes (they publish), beat also the schedules, a worker the routes and
options of the tasks on its queues, and the alerts program what it watches
(each queue's alert threshold, the worker programs).  ``manage.py supervisord`` records what it
started with in ``$RUN_DIR/topology-applied.json``; ``manage.py
apply_topology`` compares that record with the topology now declared and
restarts exactly the programs whose part changed.  A program whose supervisor
file changed is restarted by supervisord's own update.
"""

from __future__ import annotations

import json
from pathlib import Path

from queueworks.core.inventory import ALERTS_PROGRAM
from queueworks.core.supervisor import program_names
from queueworks.core.topology import Topology

STATE_FILE = "topology-applied.json"


def _queues(topology: Topology, names=None) -> list:
    # Fair sharing's sub-queues only when declared, so a record written
    # before them still matches a topology without them.
    return [[queue.name, queue.arguments(), *([queue.fair_buckets] if queue.fair_buckets else [])]
            for queue in topology.queues if names is None or queue.name in names]


def _limits(route) -> list:
    """A route's unique / fair-share declaration (publishers and workers act on them)."""
    return [repr(declared) for declared in (route.unique, route.fair_share) if declared]


def _routes(topology: Topology, queues=None) -> list:
    annotations = topology.celery_annotations()
    return sorted([route.task, route.queue, sorted(annotations.get(route.task, {}).items()),
                   *_limits(route)]
                  for route in topology.routes if queues is None or route.queue in queues)


def _schedules(topology: Topology) -> list:
    return sorted([entry.name, entry.task, repr(entry.schedule), entry.queue,
                   sorted(entry.kwargs.items())] for entry in topology.schedules)


def program_parts(topology: Topology) -> dict[str, dict[str, str]]:
    """Program name -> {part: canonical JSON} for every part of the topology it holds."""
    def text(value) -> str:
        return json.dumps(value, sort_keys=True, default=str)

    routes = text([_queues(topology), _routes(topology)])
    parts: dict[str, dict[str, str]] = {name: {} for name in program_names(topology)}
    parts["web"] = {"routes": routes}
    parts["beat"] = {"routes": routes, "schedules": text(_schedules(topology))}
    parts[ALERTS_PROGRAM] = {"alerts": text(
        [[[queue.name, queue.wait_alert_seconds] for queue in topology.queues],
         [worker.name for worker in topology.workers]])}
    for worker in topology.workers:
        parts[worker.name] = {"routes": text([_queues(topology, worker.queues),
                                              _routes(topology, worker.queues)])}
    return parts


def read_applied(run_dir: Path) -> dict[str, dict[str, str]] | None:
    path = run_dir / STATE_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def record_applied(run_dir: Path, topology: Topology) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / STATE_FILE).write_text(json.dumps(program_parts(topology), indent=1, sort_keys=True))


def programs_to_restart(*, applied: dict[str, dict[str, str]] | None, topology: Topology,
                        running: set[str]) -> dict[str, str]:
    """Running program -> why it must restart to load the declared topology."""
    wanted = program_parts(topology)
    result: dict[str, str] = {}
    for name in sorted(running & wanted.keys()):
        if not wanted[name]:
            continue  # holds no part of the topology (flower)
        if applied is None or name not in applied:
            result[name] = "no record of the topology it started with"
            continue
        changed = [part for part in sorted(wanted[name]) if applied[name].get(part) != wanted[name][part]]
        if changed:
            result[name] = " and ".join(changed) + " changed"
    return result
