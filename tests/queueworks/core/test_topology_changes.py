"""apply_topology restarts exactly the programs whose part of the topology changed."""

import dataclasses
from datetime import timedelta

from queueworks.core.supervisor import program_names
from queueworks.core.topology_changes import program_parts, programs_to_restart, read_applied, record_applied
from projectname.topology import TOPOLOGY, Queue, Route, Schedule, Worker

RUNNING = set(program_names(TOPOLOGY))


def restarts(changed, *, running=RUNNING):
    return programs_to_restart(applied=program_parts(TOPOLOGY), topology=changed, running=running)


def test_nothing_changed_restarts_nothing():
    assert restarts(TOPOLOGY) == {}


def test_a_new_queue_worker_and_route_restart_web_beat_and_the_alerts_program():
    changed = dataclasses.replace(
        TOPOLOGY,
        queues=TOPOLOGY.queues + (Queue("exports", "CSV exports."),),
        workers=TOPOLOGY.workers + (Worker(name="exports_worker", queues=("exports",)),),
        routes=TOPOLOGY.routes + (Route("apps.exports.tasks.export_csv", "exports"),),
    )
    # The new worker is not running yet: supervisord's update starts it.  The
    # alerts program watches the new queue and program from its restart on.
    assert restarts(changed) == {"web": "routes changed", "beat": "routes changed",
                                 "alerts": "alerts changed"}


def test_a_wait_alert_threshold_restarts_the_alerts_program_only():
    queues = tuple(dataclasses.replace(queue, wait_alert_seconds=5) if queue.name == "bulk"
                   else queue for queue in TOPOLOGY.queues)
    assert restarts(dataclasses.replace(TOPOLOGY, queues=queues)) == {"alerts": "alerts changed"}


def test_a_route_option_restarts_the_workers_of_that_queue_with_web_and_beat():
    routes = tuple(dataclasses.replace(route, time_limit=120) if route.task.endswith("build_period_report")
                   else route for route in TOPOLOGY.routes)
    assert restarts(dataclasses.replace(TOPOLOGY, routes=routes)) == {
        "web": "routes changed", "beat": "routes changed", "heavy_worker": "routes changed"}


def test_a_schedule_restarts_beat_only():
    schedules = TOPOLOGY.schedules + (Schedule(name="extra", task="queueworks.core.tasks.probe",
                                               schedule=timedelta(minutes=5), queue="main_worker"),)
    assert restarts(dataclasses.replace(TOPOLOGY, schedules=schedules)) == {"beat": "schedules changed"}


def test_without_a_record_every_program_holding_the_topology_restarts(tmp_path):
    assert read_applied(tmp_path) is None
    result = programs_to_restart(applied=None, topology=TOPOLOGY, running=RUNNING)
    assert set(result) == RUNNING - {"flower"}
    record_applied(tmp_path, TOPOLOGY)
    assert programs_to_restart(applied=read_applied(tmp_path), topology=TOPOLOGY, running=RUNNING) == {}
