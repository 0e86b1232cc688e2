"""`manage.py doctor` against the live system: healthy, then each broken state it detects."""

import time

import pytest

from queueworks.doctor.diagnosis import FAIL, OK, Context, check_beat
from queueworks.doctor.services import beat_heartbeat_record
from tests.queueworks.doctor.conftest import by_check, doctor_json, run_doctor
from tests.support import rabbitmq4
from tests.support.live import free_port, wait_for
from projectname.topology import TOPOLOGY

URL = "pyamqp://u:p@127.0.0.1:5672/doctor-unit"
BROKER = "127.0.0.1:5672/doctor-unit"
PROGRAMS = [w.name for w in TOPOLOGY.workers] + ["alerts", "beat", "flower", "web"]


@pytest.mark.rabbitmq4
@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_healthy_system_is_all_ok(live_system, doctor_env):
    # beat's first heartbeats arrive 15 and 30 s after it starts.
    def beat_ok():
        code, report = doctor_json(doctor_env)
        return (code, report) if by_check(report)["beat"]["status"] == OK else None

    code, report = wait_for(beat_ok, 120, interval=3, message="doctor: beat OK")
    findings = by_check(report)
    assert code == 0 and report["ok"], [f for f in report["findings"] if f["status"] != OK]
    assert report["summary"]["FAIL"] == 0 and report["summary"]["WARN"] == 0, report
    assert live_system.vhost in findings["broker"]["message"]
    assert doctor_env["CELERY_BROKER_URL"].split("@")[0].split("//")[1].split(":")[0] \
        in findings["broker"]["message"]
    assert f"RabbitMQ {rabbitmq4.TEST_BROKER[-1]}." in findings["management"]["message"]
    for queue in TOPOLOGY.queue_names():
        assert findings[f"queue {queue}"]["status"] == OK
        assert int(findings[f"queue {queue}"]["message"].split()[0]) >= 1
    for program in PROGRAMS:
        assert findings[f"program {program}"]["message"].startswith("RUNNING")
    for worker in TOPOLOGY.workers:
        assert live_system.node(worker.name) in findings[f"ping {worker.name}"]["message"]
    assert "one beat" in findings["beat"]["message"]
    for name in ("result backend", "time zones", "eager mode", "credentials", "system checks"):
        assert findings[name]["status"] == OK, findings[name]

    text = run_doctor(doctor_env)
    assert text.returncode == 0
    lines = text.stdout.strip().splitlines()
    assert len(lines) == len(report["findings"]) + 1  # one per finding + the summary
    assert all(line.split()[0] == OK for line in lines[:-1])


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_stopped_worker_fails_with_the_fix(live_system, doctor_env):
    assert live_system.ctl("stop", "heavy_worker").returncode == 0
    try:
        result = run_doctor(doctor_env)
        lines = {line.split()[1] + " " + line.split()[2]: line
                 for line in result.stdout.splitlines() if len(line.split()) > 2}
    finally:
        live_system.ctl("start", "heavy_worker")
        live_system.wait_running(["heavy_worker"])
        live_system.wait_workers_ready(["heavy_worker"])

    assert result.returncode == 1, result.stdout
    assert lines["program heavy_worker"].startswith(FAIL)
    assert "STOPPED" in lines["program heavy_worker"]
    assert "fix: `.venv/bin/supervisorctl -c deploy/supervisord.conf start heavy_worker`" \
        in lines["program heavy_worker"]
    assert lines["queue heavy"].startswith(FAIL) and "0 consumers" in lines["queue heavy"]
    assert lines["ping heavy_worker"].startswith(FAIL)
    # main_worker is untouched.
    assert lines["program main_worker"].startswith(OK)
    assert lines["queue main_worker"].startswith(OK)


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_stopped_beat_fails_with_the_fix(live_system, doctor_env):
    assert live_system.ctl("stop", "beat").returncode == 0
    try:
        code, report = doctor_json(doctor_env)
    finally:
        live_system.ctl("start", "beat")
        live_system.wait_running(["beat"])

    beat = by_check(report)["beat"]
    assert code == 1 and not report["ok"]
    assert beat["status"] == FAIL and "STOPPED" in beat["message"]
    assert "start beat" in beat["fix"]
    assert by_check(report)["program beat"]["status"] == FAIL


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_closed_broker_port_fails_fast_with_the_fix(live_system, doctor_env):
    port = free_port()  # bound then released: nothing listens there
    env = {**doctor_env, "CELERY_BROKER_URL": f"pyamqp://nobody:unreachable@127.0.0.1:{port}/{live_system.vhost}"}
    started = time.monotonic()
    code, report = doctor_json(env)

    assert time.monotonic() - started < 60
    broker = by_check(report)["broker"]
    assert code == 1 and broker["status"] == FAIL
    assert f"127.0.0.1:{port}" in broker["message"] and live_system.vhost in broker["message"]
    assert "start RabbitMQ" in broker["fix"]
    # Nothing that needs the broker pretends to have checked it.
    assert not any(check.startswith(("queue ", "ping ")) for check in by_check(report))


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_wrong_password_and_missing_vhost_name_the_fix(live_system, doctor_env, doctor_user):
    user, _ = doctor_user
    host = doctor_env["CELERY_BROKER_URL"].split("@")[1].split("/")[0]
    wrong_password = {**doctor_env, "CELERY_BROKER_URL": f"pyamqp://{user}:nope@{host}/{live_system.vhost}"}
    no_vhost = {**doctor_env, "CELERY_BROKER_URL":
                f"{doctor_env['CELERY_BROKER_URL'].rsplit('/', 1)[0]}/missing-vhost"}

    broker = by_check(doctor_json(wrong_password)[1])["broker"]
    assert broker["status"] == FAIL and f"change_password {user}" in broker["fix"]
    broker = by_check(doctor_json(no_vhost)[1])["broker"]
    assert broker["status"] == FAIL and "add_vhost missing-vhost" in broker["fix"]


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_production_with_default_credentials_and_eager_mode_fails(live_system):
    # RabbitMQ's default account, named only (nothing listens on that port).
    guest_url = f"pyamqp://guest:guest@127.0.0.1:{free_port()}/{live_system.vhost}"
    env = {**live_system.env, "CELERY_EAGER": "1", "FLOWER_BASIC_AUTH": "flower:change-me",
           "CELERY_BROKER_URL": guest_url}
    code, report = doctor_json(env)
    findings = by_check(report)
    assert code == 1
    assert findings["credentials"]["status"] == FAIL
    assert "guest/guest" in findings["credentials"]["message"]
    assert "flower:change-me" in findings["credentials"]["message"]
    assert findings["eager mode"]["status"] == FAIL
    assert any(f["status"] == FAIL and f["message"].startswith("doctor.E001")
               for f in report["findings"] if f["check"] == "system checks")


# -- beat heartbeat logic without a process manager --------------------------------------
@pytest.mark.django_db
def test_beat_without_heartbeat_for_a_minute_fails(tmp_path):
    from datetime import timedelta

    from django.utils import timezone

    from queueworks.doctor.models import BeatHeartbeat

    old = timezone.now() - timedelta(minutes=5)
    BeatHeartbeat.objects.create(origin="gen1@a", broker=BROKER, first_seen=old, last_seen=old,
                                 beats=9)
    [finding] = check_beat(Context(broker_url=URL, run_dir=tmp_path, timeout=1, debug=False))
    assert finding.status == FAIL and "no heartbeat" in finding.message


@pytest.mark.django_db
def test_two_beats_at_once_fail_and_a_restart_does_not(tmp_path):
    ctx = Context(broker_url=URL, run_dir=tmp_path, timeout=1, debug=False)
    for _ in range(2):
        beat_heartbeat_record(origin="gen1@host-a", broker=BROKER)
    assert check_beat(ctx)[0].status == OK          # one beat; then it restarted:
    for _ in range(2):
        beat_heartbeat_record(origin="gen2@host-a", broker=BROKER)
    assert check_beat(ctx)[0].status == OK
    for _ in range(2):                               # a beat of another system (broker)
        beat_heartbeat_record(origin="gen3@host-b", broker="10.0.0.9:5672/other")
    assert check_beat(ctx)[0].status == OK
    beat_heartbeat_record(origin="gen1@host-a", broker=BROKER)  # the old one still ticks
    [finding] = check_beat(ctx)
    assert finding.status == FAIL and "2 beat processes" in finding.message


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_doctor_judges_each_program_on_the_host_that_runs_it(live_system, doctor_env):
    """Inventory SPLIT: main_worker declared on "there", the rest on "here".
    With main_worker stopped, doctor on "here" does not FAIL it (it names the
    host that runs it); doctor on "there" does."""
    env = dict(doctor_env, DEPLOY_INVENTORY="tests.support.host_inventory:SPLIT")
    live_system.rpc().stopProcess("main_worker", True)
    try:
        _, here = doctor_json(env, "--host", "here")
        finding = by_check(here)["program main_worker"]
        assert finding["status"] == OK
        assert finding["message"] == "runs on there, not here: judged by doctor there"
        assert by_check(here)["program web"]["message"].startswith("RUNNING")
        _, there = doctor_json(env, "--host", "there")
        assert by_check(there)["program main_worker"]["status"] == FAIL
        assert by_check(there)["program web"]["message"].startswith("runs on here")
        _, unknown = doctor_json(dict(env, DEPLOY_HOST=""))
        assert "does not know which host" in by_check(unknown)["supervisor"]["message"]
    finally:
        live_system.rpc().startProcess("main_worker", True)
        live_system.wait_workers_ready(["main_worker"], timeout=120)
