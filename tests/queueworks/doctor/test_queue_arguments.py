"""A queue pre-declared with other arguments: named by doctor and /ops/ as the cause,
migrated with a backlog losing nothing and running nothing twice, then the worker runs;
alerts with nobody watching."""

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from queueworks.core.broker_state import declared_queues, queue_states
from tests.queueworks.doctor.conftest import by_check, doctor_json
from tests.support import rabbit
from tests.support.fault_counts import count_run
from tests.support.live import PROJECT_ROOT, wait_for
from projectname.topology import TOPOLOGY

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]
BACKLOG = 500
UNACKED = 50


def _peek(vhost: str) -> list[bytes]:
    """Every message body in `celery`, read without acking (the close returns them)."""
    conn = rabbit.admin_connection(vhost)
    channel = conn.channel()
    bodies = []
    while (message := channel.basic_get("celery", no_ack=False)) is not None:
        bodies.append((message.body if isinstance(message.body, bytes) else message.body.encode(),
                       message.properties.get("correlation_id"),
                       message.properties.get("priority")))
    conn.close()
    return sorted(bodies)


def _as_declared(arguments: dict) -> dict:
    """Arguments as compared with the declaration: RabbitMQ 4 reports the
    implicit ``x-queue-type: classic`` that 3.x leaves out."""
    return {key: value for key, value in arguments.items()
            if (key, value) != ("x-queue-type", "classic")}


def _manage(env, *args, timeout=600):
    return subprocess.run([sys.executable, "manage.py", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.rabbitmq4
@pytest.mark.timeout(1500)
def test_conflict_named_then_migrated_with_a_backlog_and_the_worker_runs(
        live_system, doctor_env, client, django_user_model, monkeypatch):
    from apps.testing.services import fault_account_open
    from projectname.celery import app

    vhost = live_system.vhost
    # Effect tasks (apps/testing): each token's effect is applied once whatever
    # the redeliveries, so the run counts as lost, run and applied twice.
    run_id = uuid.uuid4().hex[:12]
    fault_account_open(run_id=run_id)
    tokens = {f"t{i}" for i in range(BACKLOG)}
    assert live_system.ctl("stop", "main_worker").returncode == 0
    try:
        # Another application's `celery` queue: no dead-letter argument.
        rabbit._api("DELETE", f"queues/{vhost}/celery")
        conn = rabbit.admin_connection(vhost)
        channel = conn.channel()
        channel.queue_declare("celery", durable=True, auto_delete=False)
        channel.queue_bind("celery", "celery", "celery")
        conn.close()
        # declare=[]: a producer declaring `celery` fails with PRECONDITION_FAILED too.
        for token in sorted(tokens):
            app.send_task("apps.testing.tasks.fault_effect", args=[run_id, token], queue="celery",
                          routing_key="celery", declare=[])
        before = _peek(vhost)
        assert len(before) == BACKLOG
        live_system.rpc().startProcess("main_worker", False)
        # On a loaded machine the worker takes longer than supervisor's startsecs
        # to fail: RUNNING -> EXITED -> STARTING, not always BACKOFF.
        log = live_system.run_dir / "log" / "main_worker.log"
        wait_for(lambda: log.read_text(errors="replace").count("PRECONDITION_FAILED") >= 4,
                 300, interval=1, message="main_worker crash-looping on PRECONDITION_FAILED")

        last = {}

        def conflict_named():
            code, report = doctor_json(doctor_env)
            findings = last["findings"] = by_check(report)
            return findings if "arguments celery" in findings and \
                "PRECONDITION_FAILED" in findings["program main_worker"]["message"] else None

        try:
            findings = wait_for(conflict_named, 90, interval=2, message="doctor names the cause")
        except TimeoutError:
            pytest.fail(f"doctor did not name the cause: {last.get('findings')}")
        assert findings["arguments celery"]["status"] == "FAIL"
        # Declared quorum (the 4.x pass), the type's difference is named first.
        assert "queue celery: x-dead-letter-exchange is absent on the broker, declared " \
               "'dead_letter'" in findings["arguments celery"]["message"]
        assert "migrate_queues" in findings["arguments celery"]["fix"]
        for name in ("program main_worker", "ping main_worker", "queue main_worker"):
            assert "a consequence of the argument conflict on queue celery" in \
                findings[name]["message"], findings[name]
            assert "start main_worker" not in findings[name]["fix"]
            assert "migrate_queues" in findings[name]["fix"]
        declared = declared_queues()["celery"].queue_arguments
        # RabbitMQ names one differing argument: which one depends on its version.
        assert "inequivalent arg 'x-" in findings["program main_worker"]["message"]

        # /ops/ shows the same cause and the program's own exception line.
        monkeypatch.setenv("RUN_DIR", str(live_system.run_dir))
        from django.contrib.auth.models import Permission

        viewer = django_user_model.objects.create_user("ops-conflict", password="x-9!pass")
        viewer.user_permissions.add(Permission.objects.get(
            content_type__app_label="taskapi", codename="view_all_tasks"))
        client.force_login(viewer)
        page = client.get("/ops/").content.decode()
        assert "queue celery: x-dead-letter-exchange is absent on the broker, declared " \
               "&#x27;dead_letter&#x27;" in page
        programs = page[page.find('data-program="main_worker"'):][:1500]
        assert "PRECONDITION_FAILED - inequivalent arg" in programs, programs

        dry = _manage(live_system.env, "migrate_queues", "--dry-run")
        assert dry.returncode == 0 and "dry run: nothing changed" in dry.stdout, dry.stderr
        assert "x-dead-letter-exchange is absent" in dry.stdout
        assert "x-dead-letter-exchange" not in queue_states(["celery"])["celery"].arguments

        # A consumer elsewhere holds some messages unacked until the workers are paused.
        holder = rabbit.admin_connection(vhost)
        hold_channel = holder.channel()
        hold_channel.basic_qos(0, UNACKED, False)
        held = []
        hold_channel.basic_consume("celery", callback=held.append, no_ack=False)
        while len(held) < UNACKED:
            holder.drain_events(timeout=10)
        in_flight = {message.body.decode() if isinstance(message.body, bytes) else message.body
                     for message in held}
        assert len(in_flight) == UNACKED

        # The holder lets go once the command has paused the workers: the command
        # must wait for those unacked messages to come back.
        # The programs' own users are least-privilege; an operator runs the
        # migration with a management user that may set policies.
        operator_env = {**live_system.env, "RABBITMQ_MANAGEMENT_USER": rabbit.AUTH[0],
                        "RABBITMQ_MANAGEMENT_PASSWORD": rabbit.AUTH[1]}
        # As in an operator's shell: its output to this pipe is buffered unless flushed.
        operator_env.pop("PYTHONUNBUFFERED", None)
        process = subprocess.Popen(
            [sys.executable, "manage.py", "migrate_queues", "--no-resume",
             f"--run-dir={live_system.run_dir}"], cwd=PROJECT_ROOT, env=operator_env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("celery: paused"):
                holder.close()
        process.wait(timeout=600)
        result = subprocess.CompletedProcess(process.args, process.returncode,
                                             "\n".join(lines), "")
        assert any("no consumer and no unacked message left" in line for line in lines)
        assert result.returncode == 0, result.stdout + result.stderr
        assert _as_declared(queue_states(["celery"])["celery"].arguments) == declared
        # Every body, correlation id and priority, once: the waiting messages and
        # the in-flight ones the holder gave back.
        after = _peek(vhost)
        assert after == before
        assert in_flight <= {body.decode() for body, _, _ in after}
        table = result.stdout.splitlines()[-2:]
        assert table[0].split()[:5] == ["queue", "before", "aside", "back", "after"]
        assert table[1].split()[0] == "celery" and int(table[1].split()[4]) == BACKLOG
    finally:
        # Whatever failed above, the session's other tests need `celery` as
        # declared: a queue still conflicting is dropped (its test messages
        # with it) and the worker declares it again.
        state = queue_states(["celery"])["celery"]
        if state.exists and "x-dead-letter-exchange" not in state.arguments:
            rabbit._api("DELETE", f"queues/{vhost}/celery")
        live_system.ctl("start", "main_worker")
    live_system.wait_running(["main_worker"], timeout=120)
    live_system.wait_workers_ready(["main_worker"])
    wait_for(lambda: len(count_run(run_id).effect_tokens) == BACKLOG, 180, interval=1,
             message="the whole backlog ran")
    # Nothing of the run is left to redeliver, then count.
    wait_for(lambda: rabbit.queue_info(vhost, "celery")["messages"] == 0, 60, interval=1,
             message="celery empty")
    counted = count_run(run_id)
    lost = tokens - counted.effect_tokens
    duplicated = counted.balance - len(counted.effect_tokens)
    print(f"\nmigrate_queues with a backlog: sent {BACKLOG} ({UNACKED} in flight), run "
          f"{len(counted.executed_tokens)} ({counted.executions} executions), lost {len(lost)}, "
          f"duplicated effects {duplicated}")
    assert lost == set() and duplicated == 0, (sorted(lost)[:10], duplicated)
    assert counted.executed_tokens == tokens
    code, report = doctor_json(doctor_env)
    assert by_check(report)["queue arguments"]["status"] == "OK"


def _mail(run_dir: Path) -> str:
    return "\n".join(path.read_text(errors="replace")
                     for path in sorted((run_dir / "mail").glob("*")))


@pytest.mark.timeout(600)
def test_a_stopped_worker_alerts_and_recovers_with_nobody_watching(live_system):
    from queueworks.core.tasks import heavy_probe

    # The alerts program evaluates by itself: no task, no beat entry, no page open.
    assert live_system.states().get("alerts") == "RUNNING"
    assert all(schedule.name != "ops-alerts" for schedule in TOPOLOGY.schedules)

    assert live_system.ctl("stop", "heavy_worker").returncode == 0
    try:
        heavy_probe.delay(uuid.uuid4().hex, 0)

        def alerted():
            return "no consumer" in _mail(live_system.run_dir) and \
                "queue heavy: " in _mail(live_system.run_dir)

        wait_for(alerted, 150, interval=5, message="the no-consumer alert e-mail")
    finally:
        live_system.ctl("start", "heavy_worker")
    live_system.wait_workers_ready(["heavy_worker"])

    def recovered():
        return "RESOLVED queue heavy" in _mail(live_system.run_dir)

    wait_for(recovered, 150, interval=5, message="the recovery e-mail")
