"""The balancer's actuator for a program of single-process workers
(queueworks/balancer/processes.py) and supervisord's view of such a program
(queueworks/core/supervisord_client.py), against stand-ins of supervisord and
Celery's remote control."""

from __future__ import annotations

import pytest

from queueworks.balancer.pools import PoolError
from queueworks.balancer.processes import live_processes, process_change
from queueworks.core.supervisord_client import Supervisord, program_info


def info(number: int, state: str, *, group: str = "solo", pid: int = 0) -> dict:
    return {"group": group, "name": f"{group}_{number}", "statename": state,
            "pid": pid or (100 + number if state == "RUNNING" else 0),
            "start": 10 + number, "stop": 0, "now": 50, "description": ""}


class FakeSupervisord(Supervisord):
    """supervisord's XML-RPC answers from a list of processes; records calls."""

    def __init__(self, processes: list[dict], autostart: set[str] = frozenset()):
        super().__init__()
        self.processes, self.autostart, self.calls = processes, autostart, []

    def _call(self, method: str, *args):
        self.calls.append((method, *args))
        if method == "getAllProcessInfo":
            return [dict(p) for p in self.processes]
        if method == "getAllConfigInfo":
            return [{"group": p["group"], "name": p["name"],
                     "autostart": p["name"] in self.autostart} for p in self.processes]
        if method in ("startProcess", "stopProcess"):
            name = args[0].partition(":")[2] or args[0]
            process = next(p for p in self.processes if p["name"] == name)
            process["statename"] = "STARTING" if method == "startProcess" else "STOPPING"
            return True
        raise AssertionError(method)


class FakeApp:
    """``app.control.inspect(...).active()``: idle nodes answer [], busy ones do not."""

    def __init__(self, idle: set[str]):
        self.idle, self.control = idle, self

    def inspect(self, destination, timeout):
        self.destination = destination
        return self

    def active(self):
        return {node: [] for node in self.destination if node in self.idle}


def node_of(number: int) -> str:
    return f"solo_{number}@host"


def test_a_start_starts_the_lowest_stopped_processes_without_waiting():
    supervisord = FakeSupervisord([info(1, "RUNNING"), info(2, "STOPPED"), info(3, "STOPPED")])
    assert process_change(FakeApp(set()), supervisord, "solo", by=1, node_of=node_of) == 1
    assert ("startProcess", "solo:solo_2", False) in supervisord.calls
    assert [p["name"] for p in live_processes(supervisord, "solo")] == ["solo_1", "solo_2"]


def test_a_start_beyond_the_group_is_refused_with_what_moved():
    supervisord = FakeSupervisord([info(1, "RUNNING"), info(2, "STOPPED")])
    with pytest.raises(PoolError, match="1 of 2 processes started") as refused:
        process_change(FakeApp(set()), supervisord, "solo", by=2, node_of=node_of)
    assert refused.value.moved == 1


def test_a_stop_ends_the_highest_idle_process_warmly_never_a_busy_one():
    supervisord = FakeSupervisord([info(1, "RUNNING"), info(2, "RUNNING"), info(3, "RUNNING")])
    # solo_3 runs a task (a busy solo worker does not answer remote control).
    app = FakeApp({node_of(1), node_of(2)})
    assert process_change(app, supervisord, "solo", by=-1, node_of=node_of) == 1
    assert ("stopProcess", "solo:solo_2", False) in supervisord.calls
    assert [p["name"] for p in live_processes(supervisord, "solo")] == ["solo_1", "solo_3"]


def test_a_stop_with_every_process_busy_is_refused():
    supervisord = FakeSupervisord([info(1, "RUNNING"), info(2, "RUNNING")])
    with pytest.raises(PoolError, match="all 2 running processes busy"):
        process_change(FakeApp(set()), supervisord, "solo", by=-1, node_of=node_of)
    assert not [call for call in supervisord.calls if call[0] == "stopProcess"]


def test_stopping_and_stopped_processes_are_not_live():
    supervisord = FakeSupervisord([info(1, "RUNNING"), info(2, "STOPPING"), info(3, "STOPPED"),
                                   info(4, "STARTING"), info(10, "BACKOFF")])
    assert [p["name"] for p in live_processes(supervisord, "solo")] == [
        "solo_1", "solo_4", "solo_10"]


def test_a_program_of_processes_is_one_program_to_the_other_commands():
    supervisord = FakeSupervisord([info(1, "RUNNING"), info(2, "STOPPED"),
                                   info(1, "RUNNING", group="beat") | {"name": "beat"}])
    programs = supervisord.process_info()
    assert set(programs) == {"solo", "beat"}
    # A process the balancer stopped is no fault of the program.
    assert programs["solo"]["statename"] == "RUNNING"
    assert "solo_1 RUNNING pid 101, solo_2 STOPPED" == programs["solo"]["description"]
    assert programs["beat"]["name"] == "beat" and "processes" not in programs["beat"]
    troubled = program_info([info(1, "RUNNING"), info(2, "FATAL")])
    assert troubled["statename"] == "FATAL"


def test_a_program_start_starts_only_the_processes_that_start_with_supervisord():
    supervisord = FakeSupervisord([info(1, "STOPPED"), info(2, "STOPPED"), info(3, "STOPPED")],
                                  autostart={"solo_1", "solo_2"})
    supervisord.start("solo", wait=False)
    assert [call for call in supervisord.calls if call[0] == "startProcess"] == [
        ("startProcess", "solo:solo_1", False), ("startProcess", "solo:solo_2", False)]
    supervisord.stop("solo")
    assert [call[1] for call in supervisord.calls if call[0] == "stopProcess"] == [
        "solo:solo_1", "solo:solo_2", "solo:solo_3"]


# -- the balancer with a program of processes ----------------------------------
def balancer_of(supervisord, monkeypatch, *, backlogs: dict[str, int], pool: int = 2):
    import dataclasses

    from queueworks.balancer import runner
    from tests.queueworks.balancer.processes_topology import PROCESSES_TOPOLOGY, PREFORK, SOLO

    topology = dataclasses.replace(PROCESSES_TOPOLOGY, balance=dataclasses.replace(
        PROCESSES_TOPOLOGY.balance, cooldown_seconds=0))
    asked = []
    monkeypatch.setattr(runner, "pool_sizes",
                        lambda app, nodes: asked.append(nodes) or {node: pool for node in nodes})
    monkeypatch.setattr(runner, "balance_decision_record", lambda **record: None)
    balancer = runner.Balancer(app=FakeApp(set()), topology=topology, host="host",
                               supervisord=supervisord)
    queues = {SOLO: "test.balance_solo", PREFORK: "test.balance_prefork"}
    monkeypatch.setattr(balancer, "_backlogs",
                        lambda: {queues[name]: count for name, count in backlogs.items()})
    return balancer, asked


def test_the_balancer_counts_a_program_of_processes_through_supervisord(monkeypatch):
    supervisord = FakeSupervisord([info(1, "RUNNING", group="balance_solo"),
                                   info(2, "STOPPED", group="balance_solo")])
    balancer, asked = balancer_of(supervisord, monkeypatch, backlogs={})
    loads, unreadable = balancer.loads()
    assert unreadable == ""
    assert {load.name: load.processes for load in loads} == {
        "balance_solo": 1, "balance_prefork": 2}
    # Only the prefork program's pool is asked; every process node counts toward its program.
    assert asked == [["balance_prefork@host"]]
    assert balancer.event_nodes == {"balance_solo@host": "balance_solo",
                                    "balance_prefork@host": "balance_prefork",
                                    "balance_solo_1@host": "balance_solo",
                                    "balance_solo_2@host": "balance_solo"}


def test_a_backlog_starts_a_process_of_the_program(monkeypatch):
    from queueworks.balancer import runner

    supervisord = FakeSupervisord([info(1, "RUNNING", group="balance_solo"),
                                   info(2, "STOPPED", group="balance_solo")])
    balancer, _ = balancer_of(supervisord, monkeypatch, backlogs={"balance_solo": 30}, pool=1)
    shrunk = []
    monkeypatch.setattr(runner, "pool_change", lambda app, node, by: shrunk.append(by) or 1)
    decision = balancer.tick()
    assert [(m.program, m.before, m.after) for m in decision.moves] == [("balance_solo", 1, 2)]
    assert ("startProcess", "balance_solo:balance_solo_2", False) in supervisord.calls
    assert shrunk == [] and balancer.settling == {}


def test_an_unreachable_supervisord_is_a_round_without_moves(monkeypatch):
    from queueworks.core.supervisord_client import SupervisordUnreachable

    class Gone(FakeSupervisord):
        def _call(self, method, *args):
            raise SupervisordUnreachable("supervisord is not reachable at run/supervisor.sock")

    balancer, _ = balancer_of(Gone([]), monkeypatch, backlogs={"balance_solo": 30})
    decision = balancer.tick()
    assert decision.moves == ()
    assert "balance_solo" in decision.summary and "not reachable" in decision.summary


def test_the_last_error_of_a_program_of_processes_is_its_troubled_process(monkeypatch):
    supervisord = FakeSupervisord([info(1, "RUNNING"), info(2, "FATAL")])
    tailed = []

    def call(method, *args):
        if method == "tailProcessStdoutLog":
            tailed.append(args[0])
            return ["Traceback (most recent call last):\nValueError: bad\n", 0, False]
        return FakeSupervisord._call(supervisord, method, *args)

    monkeypatch.setattr(supervisord, "_call", call)
    assert supervisord.last_error("solo") is not None
    assert tailed == ["solo:solo_2"]


class FakeProxy:
    """supervisord's XML-RPC proxy over FakeSupervisord's processes."""

    def __init__(self, supervisord: FakeSupervisord):
        self.supervisord = supervisord

    def __getattr__(self, method):
        return lambda *args: self.supervisord._call(method, *args)


def test_ops_shows_a_program_of_processes_as_one_row_and_acts_on_all_of_it(monkeypatch):
    from queueworks.ops import programs

    supervisord = FakeSupervisord([info(1, "RUNNING"), info(2, "RUNNING"), info(3, "STOPPED"),
                                   info(1, "RUNNING", group="web") | {"name": "web"}],
                                  autostart={"solo_1", "solo_2", "web"})
    monkeypatch.setattr(programs, "declared", lambda: None)
    monkeypatch.setattr(programs, "_rpc", lambda: FakeProxy(supervisord))
    states = programs.program_states()
    assert set(states) == {"solo", "web"}
    assert states["solo"].state == "RUNNING" and "solo_3 STOPPED" in states["solo"].description

    assert "stop requested" in programs.program_control(name="solo", action="stop")
    assert [c[1] for c in supervisord.calls if c[0] == "stopProcess"] == [
        "solo:solo_1", "solo:solo_2", "solo:solo_3"]
    assert "start requested" in programs.program_control(name="solo", action="start")
    # The balancer's spare stays stopped: start is what supervisord starts.
    assert [c[1] for c in supervisord.calls if c[0] == "startProcess"] == [
        "solo:solo_1", "solo:solo_2"]
