"""A worker program of identical single-process workers (Worker.processes):
its supervisor group, its systemd template unit, and the checks."""

from __future__ import annotations

import dataclasses

import pytest

from projectname.topology import BULK_POOL, TOPOLOGY
from queueworks.core.checks import check_topology, project_task_names
from queueworks.core.supervisor import render_program_files
from queueworks.core.systemd import render_unit_files
from queueworks.core.topology import Balance, Worker


def solo(**changes) -> Worker:
    declared = dict(name="solo", queues=("main_worker",), pool=BULK_POOL, concurrency=1,
                    processes=2, task_events=False, task_events_lease=30)
    return Worker(**{**declared, **changes})


def with_solo(worker: Worker, balance: Balance | None = None):
    return dataclasses.replace(TOPOLOGY.with_added(workers=(worker,)), balance=balance)


def sections(text: str) -> dict[str, dict[str, str]]:
    import configparser

    parser = configparser.RawConfigParser()
    parser.read_string(text)
    return {name: dict(parser[name]) for name in parser.sections()}


def test_processes_render_one_supervisor_program_with_a_node_per_process():
    conf = sections(render_program_files(with_solo(solo()), only=["solo"])["solo.conf"])
    program = conf["program:solo"]
    assert program["numprocs"] == "2" and program["numprocs_start"] == "1"
    assert program["process_name"] == "solo_%(process_num)d"
    assert "--hostname=solo_%(process_num)d@%%h --pool=custom --concurrency=1" in program["command"]
    assert program["stdout_logfile"].endswith("/solo_%(process_num)d.log")
    # Warm shutdown: TERM, and time for the longest task to finish.
    assert program["stopsignal"] == "TERM" and int(program["stopwaitsecs"]) >= 90
    host = sections(render_program_files(with_solo(solo()), host="web-2", only=["solo"])["solo.conf"])
    assert "--hostname=solo_%(process_num)d@web-2 " in host["program:solo"]["command"]


def test_a_balanced_program_starts_its_processes_and_leaves_the_rest_to_the_balancer():
    topology = with_solo(solo(), Balance(workers=("solo",), budget=4, max_processes=4))
    assert topology.process_slots(topology.worker_named("solo")) == 4
    conf = sections(render_program_files(topology, only=["solo"])["solo.conf"])
    assert conf["group:solo"]["programs"] == "solo_started,solo_spare"
    started, spare = conf["program:solo_started"], conf["program:solo_spare"]
    assert (started["numprocs"], started["numprocs_start"], started["autostart"]) == ("2", "1", "true")
    assert (spare["numprocs"], spare["numprocs_start"], spare["autostart"]) == ("2", "3", "false")
    assert started["process_name"] == spare["process_name"] == "solo_%(process_num)d"


def test_systemd_renders_a_template_unit_and_starts_the_declared_instances():
    topology = with_solo(solo(), Balance(workers=("solo",), budget=4, max_processes=3))
    files = render_unit_files(topology)
    unit = files["projectname-solo@.service"]
    assert "--hostname=solo_%i@%%h" in unit and "SyslogIdentifier=projectname-solo_%i" in unit
    assert "KillSignal=SIGTERM" in unit and "KillMode=mixed" in unit
    wants = next(line for line in files["projectname.target"].splitlines()
                 if line.startswith("Wants="))
    assert "projectname-solo@1.service projectname-solo@2.service" in wants
    assert "projectname-solo@3.service" not in wants


def test_one_process_renders_as_before():
    topology = with_solo(solo(processes=1))
    program = sections(render_program_files(topology, only=["solo"])["solo.conf"])["program:solo"]
    assert "numprocs" not in program and "--hostname=solo@%%h " in program["command"]
    assert "projectname-solo.service" in render_unit_files(topology)


@pytest.mark.parametrize("changes, named", [
    ({"pool": "prefork"}, "the prefork pool"),
    ({"pool": "prefork", "autoscale": (3, 1)}, "autoscale"),
])
def test_the_check_refuses_processes_with_a_pool_that_grows_itself(changes, named):
    errors = check_topology(with_solo(solo(**changes)), project_task_names())
    refused = [e for e in errors if e.id == "topology.E013"]
    assert len(refused) == 1 and "'solo'" in refused[0].msg and named in refused[0].msg


def test_the_check_accepts_processes_of_a_single_process_pool():
    errors = check_topology(with_solo(solo(processes=4)), project_task_names())
    assert [e for e in errors if e.id in ("topology.E013", "topology.E012")] == []


def test_processes_are_bounded():
    with pytest.raises(ValueError, match="processes must be 1-64"):
        solo(processes=0)


def test_a_balance_counts_a_program_of_processes_by_its_processes():
    topology = with_solo(solo(processes=2), Balance(workers=("solo",), budget=4, max_processes=4))
    assert topology.balance.problems(topology) == []
    over = with_solo(solo(processes=3), Balance(workers=("solo",), budget=2, max_processes=2))
    assert any("starts with processes 3, outside its bounds 1-2" in p
               for p in over.balance.problems(over))
    threads = with_solo(solo(pool="threads", concurrency=4, processes=1),
                        Balance(workers=("solo",), budget=4))
    assert any("concurrency=1" in p for p in threads.balance.problems(threads))


def test_a_host_of_the_inventory_renders_the_program_of_processes_too():
    from queueworks.core.host_files import render_host_supervisor_files, render_host_unit_files
    from queueworks.core.inventory import Host, Inventory, Paths

    topology = with_solo(solo(), Balance(workers=("solo",), budget=4, max_processes=3))
    inventory = Inventory(hosts=(Host("web-2", "10.0.0.2", programs=("solo",)),),
                          paths=Paths(project_root="/srv/p", run_dir="/srv/p/run"))
    files = render_host_supervisor_files(topology, inventory, "web-2")
    conf = sections(next(text for path, text in files.items() if path.name == "solo.conf"))
    assert conf["group:solo"]["programs"] == "solo_started,solo_spare"
    assert "--hostname=solo_%(process_num)d@web-2 " in conf["program:solo_started"]["command"]
    assert conf["program:solo_spare"]["numprocs_start"] == "3"
    units = render_host_unit_files(topology, inventory, "web-2")
    assert "--hostname=solo_%i@web-2 " in units["projectname-solo@.service"]
    wants = next(line for line in units["projectname.target"].splitlines()
                 if line.startswith("Wants="))
    assert wants == "Wants=projectname-solo@1.service projectname-solo@2.service"


def test_a_process_node_belongs_to_its_program():
    topology = with_solo(solo(processes=3))
    assert topology.program_of_node("solo_3@web-1") == "solo"
    assert topology.program_of_node("solo_4@web-1") == "solo_4"
    assert topology.program_of_node("main_worker@web-1") == "main_worker"
    # A declared program's own name wins: the bulk lane's programs are numbered too.
    assert topology.program_of_node("bulk_worker_2@web-1") == "bulk_worker_2"


def test_the_doctor_and_the_task_api_count_a_process_node_for_its_program(monkeypatch):
    from queueworks.doctor import checks_broker
    from queueworks.taskapi import selectors

    topology = with_solo(solo())
    monkeypatch.setattr("queueworks.conf.TOPOLOGY", topology)
    monkeypatch.setattr(selectors, "TOPOLOGY", topology)
    assert selectors._program("solo_2@web-1") == "solo"

    class App:
        class control:
            @staticmethod
            def ping(timeout):
                return [{"solo_2@web-1": {"ok": "pong"}}]

    monkeypatch.setattr("queueworks.conf.celery_app", lambda: App)
    ctx = type("Ctx", (), {"broker_ok": True, "timeout": 1.0, "conflicts": {}})()
    findings = {f.check: f for f in checks_broker.check_worker_replies(ctx)
                if f.check == "ping solo"}
    assert findings["ping solo"].status == "OK", findings


def test_the_overview_shows_the_processes_and_a_balanced_maximum(monkeypatch):
    import io

    from django.core.management import call_command

    from queueworks.core.management.commands import topology as command

    monkeypatch.setattr(command, "TOPOLOGY", with_solo(
        solo(), Balance(workers=("solo",), budget=4, max_processes=3)))
    out = io.StringIO()
    call_command("topology", stdout=out)
    row = next(line for line in out.getvalue().splitlines() if line.startswith("solo "))
    assert " 1 x 2-3 " in row
