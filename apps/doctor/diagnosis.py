"""The checks behind `python manage.py doctor`.

Each check turns one troubleshooting step of the Celery/RabbitMQ guides into a
finding: OK, WARN or FAIL, a one-line message and, unless OK, the fix.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
import xmlrpc.client
import zoneinfo
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

from apps.core.broker_state import MIGRATE_FIX

OK, WARN, FAIL = "OK", "WARN", "FAIL"
SUPERVISORCTL = ".venv/bin/supervisorctl -c deploy/supervisord.conf"
# Defaults from settings.py / .env.example that must not reach production.
DEFAULT_SECRET_KEYS = {"dev-only-insecure-secret-key"}
DEFAULT_FLOWER_AUTH = {"flower:change-me"}
# Programs that are not workers: their absence is a warning, not a failure.
SUPPORT_PROGRAMS = ("web", "flower")


@dataclass
class Finding:
    check: str
    status: str
    message: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<4}  {self.check:<22} {self.message}"
        return f"{text}  -> fix: {self.fix}" if self.fix and self.status != OK else text

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Context:
    broker_url: str
    run_dir: Path
    timeout: float
    debug: bool
    broker_ok: bool = False
    supervisor_states: dict | None = None  # name -> process info, None: unreachable
    # Queue name -> differences between its live and declared arguments.
    conflicts: dict = field(default_factory=dict)


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def _broker_identity(url: str) -> tuple[str, str, str]:
    """(user, host:port, vhost-or-db) as the URL names them."""
    parts = urlsplit(url)
    is_redis = parts.scheme.startswith("redis")
    default_port = 6379 if is_redis else 5672
    user = unquote(parts.username or ("" if is_redis else "guest"))
    host = f"{parts.hostname or '127.0.0.1'}:{parts.port or default_port}"
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    vhost = (f"db {path or 0}" if is_redis else f"vhost '{unquote(path) or '/'}'")
    return user, host, vhost


# -- broker ------------------------------------------------------------------
def check_broker(ctx: Context) -> list[Finding]:
    from kombu import Connection

    from apps.doctor.broker import is_redis

    user, host, vhost = _broker_identity(ctx.broker_url)
    who = f"as user '{user}' on {vhost}" if user else f"on {vhost}"
    try:
        if is_redis(ctx.broker_url):
            import redis

            redis.Redis.from_url(ctx.broker_url, socket_connect_timeout=ctx.timeout,
                                 socket_timeout=ctx.timeout).ping()
        else:
            with Connection(ctx.broker_url, connect_timeout=ctx.timeout) as connection:
                connection.connect()
    except Exception as error:  # noqa: BLE001 - every failure is a finding
        return [Finding("broker", FAIL, f"cannot connect to {host} {who}: {_describe(error)}",
                        _broker_fix(error, ctx.broker_url))]
    ctx.broker_ok = True
    return [Finding("broker", OK, f"connected to {_safe_url(ctx.broker_url)} ({who})")]


def _describe(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}" if type(error).__name__ not in text else text


def _broker_fix(error: Exception, url: str) -> str:
    user, host, vhost = _broker_identity(url)
    text = f"{type(error).__name__} {error}".lower()
    if "redis" in urlsplit(url).scheme:
        return (f"start Redis on {host} (`bash deploy/bin/ensure-system.sh` or "
                "`sudo redis-server --daemonize yes`), or fix CELERY_BROKER_URL")
    if "access_refused" in text or "accessrefused" in text or "login" in text:
        return (f"credentials refused: `rabbitmqctl change_password {user} '<password>'` "
                "or fix the user/password in CELERY_BROKER_URL")
    if "not_allowed" in text or "notallowed" in text or "vhost" in text:
        name = vhost.split("'")[1] if "'" in vhost else vhost
        return (f"`rabbitmqctl add_vhost {name}` and `rabbitmqctl set_permissions -p {name} "
                f"{user} '.*' '.*' '.*'`, or fix the vhost in CELERY_BROKER_URL")
    return (f"nothing answers on {host}: start RabbitMQ (`bash deploy/bin/ensure-system.sh` "
            "or `sudo rabbitmq-server -detached`), or fix host/port in CELERY_BROKER_URL")


def check_management(ctx: Context) -> list[Finding]:
    import requests

    from apps.doctor.broker import is_redis

    if is_redis(ctx.broker_url):
        return [Finding("management", OK, "not used: the broker is Redis")]
    parts = urlsplit(ctx.broker_url)
    base = os.environ.get("RABBITMQ_MANAGEMENT_URL",
                          f"http://{parts.hostname or '127.0.0.1'}:15672").rstrip("/")
    user, password = unquote(parts.username or "guest"), unquote(parts.password or "guest")
    try:
        response = requests.get(f"{base}/api/overview", auth=(user, password), timeout=ctx.timeout)
    except requests.RequestException as error:
        return [Finding("management", WARN, f"management API not reachable at {base}: "
                        f"{type(error).__name__}",
                        "`sudo rabbitmq-plugins enable rabbitmq_management` (queue statistics, "
                        "Flower's broker tab and the ops dashboard use it)")]
    if response.status_code == 401:
        return [Finding("management", WARN, f"management API at {base} refuses user '{user}'",
                        f"`rabbitmqctl set_user_tags {user} monitoring`")]
    if not response.ok:
        return [Finding("management", WARN, f"management API at {base} answered "
                        f"HTTP {response.status_code}", "check the plugin: `rabbitmq-plugins list`")]
    version = response.json().get("rabbitmq_version", "?")
    return [Finding("management", OK, f"management plugin at {base} (RabbitMQ {version})")]


# -- queues and workers --------------------------------------------------------
def check_queues(ctx: Context) -> list[Finding]:
    from apps.doctor.broker import is_redis
    from projectname.topology import TOPOLOGY

    if not ctx.broker_ok:
        return []
    redis = is_redis(ctx.broker_url)
    counts = (_redis_queue_counts if redis else _amqp_queue_counts)(ctx)
    findings = [] if redis else _argument_findings(ctx)
    for queue in TOPOLOGY.queues:
        programs = ", ".join(w.name for w in TOPOLOGY.consumers_of(queue.name))
        start = f"`{SUPERVISORCTL} start {programs.replace(', ', ' ')}`"
        messages, consumers = counts.get(queue.name, (None, None))
        causes = _conflict_causes(ctx, [w.name for w in TOPOLOGY.consumers_of(queue.name)])
        if messages is None:
            findings.append(Finding(f"queue {queue.name}", FAIL,
                                    "not declared on the broker: no consumer ever started here",
                                    f"start the worker(s) declared for it ({programs}): {start}"))
        elif consumers == 0 and causes:
            findings.append(Finding(f"queue {queue.name}", FAIL,
                                    f"0 consumers, {messages} message(s) waiting: a consequence "
                                    f"of {causes}", MIGRATE_FIX))
        elif consumers == 0:
            findings.append(Finding(f"queue {queue.name}", FAIL,
                                    f"0 consumers, {messages} message(s) waiting",
                                    f"start {programs}: {start}"))
        else:
            findings.append(Finding(f"queue {queue.name}", OK,
                                    f"{consumers} consumer(s), {messages} message(s) waiting"))
    return findings


def _argument_findings(ctx: Context) -> list[Finding]:
    """Live type and arguments of every topology queue against its declaration."""
    from apps.core.broker_state import BrokerStateError, queue_conflicts, queue_states
    from projectname.topology import TOPOLOGY

    try:
        states = queue_states(TOPOLOGY.queue_names(), broker_url=ctx.broker_url,
                              timeout=ctx.timeout)
    except BrokerStateError as error:
        return [Finding("queue arguments", WARN, f"not compared: {error}",
                        "enable the management plugin (see the 'management' line)")]
    ctx.conflicts = queue_conflicts(states)
    if not ctx.conflicts:
        return [Finding("queue arguments", OK, f"{len(states)} queue(s) as declared "
                        "(type and x-arguments)")]
    return [Finding(f"arguments {name}", FAIL,
                    "; ".join(differences) + ": workers declaring it fail with "
                    "PRECONDITION_FAILED", MIGRATE_FIX)
            for name, differences in ctx.conflicts.items()]


def _conflict_causes(ctx: Context, worker_names: list[str]) -> str:
    """"the argument conflict on queue celery" when those workers consume a conflicting queue."""
    from projectname.topology import TOPOLOGY

    names = sorted({queue for worker in TOPOLOGY.workers if worker.name in worker_names
                    for queue in worker.queues if queue in ctx.conflicts})
    if not names:
        return ""
    return (f"the argument conflict on queue {', '.join(names)} "
            f"({', '.join(worker_names)} cannot declare it)")


def _amqp_queue_counts(ctx: Context) -> dict[str, tuple[int, int]]:
    from kombu import Connection

    from apps.core.broker_state import queue_counts
    from projectname.topology import TOPOLOGY

    with Connection(ctx.broker_url, connect_timeout=ctx.timeout) as connection:
        counts = queue_counts(connection, TOPOLOGY.queue_names())
    return {name: count for name, count in counts.items() if count is not None}


def _redis_queue_counts(ctx: Context) -> dict[str, tuple[int, int]]:
    """Redis has no consumer count: ask the workers which queues they consume."""
    from kombu import Connection

    from projectname.celery import app
    from projectname.topology import TOPOLOGY

    replies = app.control.inspect(timeout=ctx.timeout).active_queues() or {}
    consumers = {q.name: 0 for q in TOPOLOGY.queues}
    for queues in replies.values():
        for queue in queues or []:
            if queue["name"] in consumers:
                consumers[queue["name"]] += 1
    counts = {}
    with Connection(ctx.broker_url) as connection:
        channel = connection.default_channel
        for queue in TOPOLOGY.queues:
            try:
                _, messages, _ = channel.queue_declare(queue=queue.name, passive=True)
            except connection.channel_errors:
                messages = 0  # Redis "declares" a queue only while messages wait in it
            counts[queue.name] = (messages, consumers[queue.name])
    return counts


def check_worker_replies(ctx: Context) -> list[Finding]:
    from projectname.celery import app
    from projectname.topology import TOPOLOGY

    if not ctx.broker_ok:
        return []
    replies = app.control.ping(timeout=ctx.timeout) or []
    nodes = sorted(node for reply in replies for node in reply)
    findings = []
    for worker in TOPOLOGY.workers:
        mine = [node for node in nodes if node.startswith(f"{worker.name}@")]
        if mine:
            findings.append(Finding(f"ping {worker.name}", OK, f"{', '.join(mine)} replied"))
        elif causes := _conflict_causes(ctx, [worker.name]):
            findings.append(Finding(f"ping {worker.name}", FAIL, f"no '{worker.name}@…' node "
                                    f"replied: a consequence of {causes}", MIGRATE_FIX))
        else:
            findings.append(Finding(
                f"ping {worker.name}", FAIL, f"no '{worker.name}@…' node replied within "
                f"{ctx.timeout:g} s", f"`{SUPERVISORCTL} start {worker.name}` and read "
                f"run/log/{worker.name}.log"))
    return findings


def _supervisor(ctx: Context):
    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(None, None, f"unix://{ctx.run_dir}/supervisor.sock")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor


def check_programs(ctx: Context) -> list[Finding]:
    from apps.core.program_logs import program_last_error, shows_last_error
    from apps.core.supervisor import programs
    from projectname.topology import TOPOLOGY

    socket_path = ctx.run_dir / "supervisor.sock"
    if not socket_path.exists():
        return [Finding("supervisor", WARN, f"no supervisord socket at {socket_path}: "
                        "program states not checked",
                        "`make run` (or `python manage.py supervisord`); with systemd units: "
                        "`systemctl status 'projectname-*'`; or pass --run-dir")]
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(ctx.timeout)
    rpc = _supervisor(ctx)
    try:
        infos = rpc.getAllProcessInfo()
    except Exception as error:  # noqa: BLE001
        return [Finding("supervisor", FAIL, f"supervisord at {socket_path} does not answer: "
                        f"{_describe(error)}", "restart it: `make run`")]
    finally:
        socket.setdefaulttimeout(previous)
    ctx.supervisor_states = {info["name"]: info for info in infos}
    findings = []
    for program in programs(TOPOLOGY):
        info = ctx.supervisor_states.get(program.name)
        state = info["statename"] if info else "MISSING"
        error = program_last_error(rpc, program.name) if info and shows_last_error(info) else None
        if state == "RUNNING" and not error:
            uptime = int(info["now"] - info["start"])
            findings.append(Finding(f"program {program.name}", OK,
                                    f"RUNNING, pid {info['pid']}, up {uptime} s"))
            continue
        status = WARN if program.name in SUPPORT_PROGRAMS or state == "RUNNING" else FAIL
        message = state
        if state == "RUNNING":
            message = (f"RUNNING for {int(info['now'] - info['start'])} s, restarted "
                       f"{int(info['now'] - info['stop'])} s ago (a crash loop?)")
        if info and shows_last_error(info):
            message = f"{message}, last error in its log: {error}" if error else \
                f"{message} (no error line in its log)"
        if causes := _conflict_causes(ctx, [program.name]):
            findings.append(Finding(f"program {program.name}", FAIL,
                                    f"{message}: a consequence of {causes}", MIGRATE_FIX))
            continue
        if state == "MISSING":
            fix = (f"`python manage.py render_supervisor` then "
                   f"`{SUPERVISORCTL} reread && {SUPERVISORCTL} update`")
        else:
            fix = f"`{SUPERVISORCTL} start {program.name}`; see run/log/{program.name}.log"
        findings.append(Finding(f"program {program.name}", status, message, fix))
    return findings


# -- beat ------------------------------------------------------------------------
def check_beat(ctx: Context) -> list[Finding]:
    from django.db import DatabaseError
    from django.utils import timezone

    from apps.doctor.selectors import beat_heartbeat_latest, beat_heartbeats_recent
    from projectname.topology import BEAT_HEARTBEAT_SECONDS, TOPOLOGY

    stale_after = timedelta(seconds=4 * BEAT_HEARTBEAT_SECONDS)
    start_fix = f"`{SUPERVISORCTL} start beat`; see run/log/beat.log"
    info = (ctx.supervisor_states or {}).get("beat")
    if ctx.supervisor_states is not None and (info is None or info["statename"] != "RUNNING"):
        state = info["statename"] if info else "not configured"
        return [Finding("beat", FAIL, f"beat program is {state}: no schedule is sent", start_fix)]
    from apps.doctor.broker import broker_identity

    broker = broker_identity(ctx.broker_url)
    try:
        latest = beat_heartbeat_latest(broker=broker)
        recent = beat_heartbeats_recent(within=stale_after, broker=broker)
    except DatabaseError as error:
        return [Finding("beat", FAIL, f"cannot read heartbeats: {_describe(error)}",
                        "`python manage.py migrate`")]
    age = (timezone.now() - latest.last_seen).total_seconds() if latest else None
    if latest is None or age > stale_after.total_seconds():
        uptime = info["now"] - info["start"] if info else None
        seen = "never" if latest is None else f"{int(age)} s ago"
        if uptime is not None and uptime < stale_after.total_seconds():
            return [Finding("beat", WARN, f"beat started {int(uptime)} s ago; last heartbeat "
                            f"{seen} (one every {BEAT_HEARTBEAT_SECONDS} s)",
                            "run doctor again in a minute")]
        queue = _heartbeat_queue()
        if causes := _conflict_causes(ctx, [w.name for w in TOPOLOGY.consumers_of(queue)]):
            return [Finding("beat", FAIL, f"no heartbeat for {stale_after.total_seconds():g} s "
                            f"(last: {seen}): a consequence of {causes}", MIGRATE_FIX)]
        return [Finding("beat", FAIL, f"no heartbeat for {stale_after.total_seconds():g} s "
                        f"(last: {seen}): beat is not ticking, or the "
                        f"'{_heartbeat_queue()}' queue is not consumed", start_fix)]
    overlapping = _overlapping(recent)
    if len(overlapping) > 1:
        return [Finding("beat", FAIL, f"{len(overlapping)} beat processes are sending at once "
                        f"({', '.join(h.origin for h in overlapping)}): every schedule runs "
                        f"{len(overlapping)} times",
                        "run exactly one beat for the whole system; stop the others")]
    return [Finding("beat", OK, f"last tick {int(age)} s ago from {latest.origin}; one beat")]


def _heartbeat_queue() -> str:
    from projectname.topology import TOPOLOGY

    return next((s.queue for s in TOPOLOGY.schedules if s.name == "beat-heartbeat"),
                TOPOLOGY.default_queue)


def _overlapping(heartbeats) -> list:
    """Senders whose [first_seen, last_seen] overlap another's: concurrent beats."""
    result = []
    for one in heartbeats:
        for other in heartbeats:
            if one is not other and one.first_seen < other.last_seen and \
                    other.first_seen < one.last_seen:
                result.append(one)
                break
    return result


# -- results, time, modes, credentials --------------------------------------------
def check_result_backend(ctx: Context) -> list[Finding]:
    from django.conf import settings

    from projectname.celery import app

    backend_name = settings.CELERY_RESULT_BACKEND
    task_id = f"doctor-{uuid.uuid4()}"
    try:
        backend = app.backend
        backend.store_result(task_id, {"doctor": True}, "SUCCESS")
        meta = backend.get_task_meta(task_id)
        if meta.get("status") != "SUCCESS":
            raise RuntimeError(f"read back status {meta.get('status')!r}")
    except Exception as error:  # noqa: BLE001
        return [Finding("result backend", FAIL, f"{_safe_url(backend_name)} not writable: "
                        f"{_describe(error)}",
                        "django-db: `python manage.py migrate`; redis://: start Redis; "
                        "or fix CELERY_RESULT_BACKEND")]
    finally:
        _forget(task_id)
    from apps.doctor.checks import results_backend_warnings

    return [Finding("result backend", OK, f"{_safe_url(backend_name)}: wrote and read back "
                    "a result")] + [
        Finding("result backend", WARN, warning.msg, warning.hint)
        for warning in results_backend_warnings(result_backend=str(backend_name),
                                                installed=list(settings.INSTALLED_APPS))]


def _forget(task_id: str) -> None:
    from projectname.celery import app

    try:
        app.backend.forget(task_id)
    except Exception:  # noqa: BLE001 - django-db has no forget(): delete the row
        try:
            from django_celery_results.models import TaskResult

            TaskResult.objects.filter(task_id=task_id).delete()
        except Exception:  # noqa: BLE001
            pass


def check_time_zones(ctx: Context) -> list[Finding]:
    from django.conf import settings

    from projectname.topology import TOPOLOGY

    problems = []
    django_zone, celery_zone = settings.TIME_ZONE, settings.CELERY_TIMEZONE
    for zone in {django_zone, celery_zone}:
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            problems.append(f"unknown zone {zone!r}")
    if django_zone != celery_zone:
        problems.append(f"TIME_ZONE={django_zone} but CELERY_TIMEZONE={celery_zone}")
    if not settings.USE_TZ:
        problems.append("USE_TZ is off")
    for entry in TOPOLOGY.schedules:
        zone = getattr(entry.schedule, "tz", None)
        if zone is not None and str(zone) != celery_zone:
            problems.append(f"schedule '{entry.name}' runs in {zone}")
    problems += _database_crontab_zones(celery_zone)
    if problems:
        return [Finding("time zones", FAIL, "; ".join(problems),
                        "set TIME_ZONE once (CELERY_TIMEZONE follows it) and give every "
                        "crontab that zone")]
    return [Finding("time zones", OK, f"Django, Celery and {len(TOPOLOGY.schedules)} "
                    f"schedule(s) all use {celery_zone}")]


def _database_crontab_zones(celery_zone: str) -> list[str]:
    """django-celery-beat crontab rows in another zone fire at other hours."""
    try:
        from django_celery_beat.models import CrontabSchedule, PeriodicTask

        rows = PeriodicTask.objects.filter(enabled=True, crontab__isnull=False).exclude(
            crontab__timezone=celery_zone).values_list("name", "crontab__timezone")
        return [f"database schedule '{name}' runs in {zone}" for name, zone in rows] \
            if CrontabSchedule else []
    except Exception:  # noqa: BLE001 - tables missing: nothing scheduled there
        return []


def check_eager(ctx: Context) -> list[Finding]:
    from django.conf import settings

    if not getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False):
        return [Finding("eager mode", OK, "off: tasks go through the broker")]
    if ctx.debug:
        return [Finding("eager mode", WARN, "CELERY_EAGER is on: tasks run inline, no broker "
                        "(development only)", "unset CELERY_EAGER to use the workers")]
    return [Finding("eager mode", FAIL, "CELERY_EAGER is on with DEBUG off: tasks bypass the "
                    "broker and workers", "unset CELERY_EAGER in production")]


def check_credentials(ctx: Context) -> list[Finding]:
    from django.conf import settings

    parts = urlsplit(ctx.broker_url)
    found = []
    if not parts.scheme.startswith("redis") and \
            unquote(parts.username or "guest") == "guest" and \
            unquote(parts.password or "guest") == "guest":
        found.append("broker user guest/guest")
    if settings.SECRET_KEY in DEFAULT_SECRET_KEYS:
        found.append("the development DJANGO_SECRET_KEY")
    if os.environ.get("FLOWER_BASIC_AUTH", "") in DEFAULT_FLOWER_AUTH:
        found.append("FLOWER_BASIC_AUTH flower:change-me")
    if not found:
        return [Finding("credentials", OK, "no default credentials in use")]
    if ctx.debug:
        return [Finding("credentials", OK, f"development defaults ({', '.join(found)}); "
                        "fine while DEBUG is on")]
    return [Finding("credentials", FAIL, f"default credentials with DEBUG off: "
                    f"{', '.join(found)}",
                    "create the project's RabbitMQ user and vhost (deploy/bin/ensure-rabbitmq-user.sh, "
                    "docs/production.md), set a real "
                    "DJANGO_SECRET_KEY and FLOWER_BASIC_AUTH")]


def check_redis_guarantees(ctx: Context) -> list[Finding]:
    from django.conf import settings

    from apps.doctor.broker import rabbitmq_only_guarantees
    from projectname.topology import TOPOLOGY

    return [Finding("redis guarantees", WARN, text, "use RabbitMQ where this guarantee matters")
            for text in rabbitmq_only_guarantees(
                broker_url=ctx.broker_url, topology=TOPOLOGY,
                transport_options=getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None))]


def check_django(ctx: Context) -> list[Finding]:
    from django.core import checks

    messages = [m for m in checks.run_checks(include_deployment_checks=False)
                if m.level >= checks.ERROR]
    if not messages:
        return [Finding("system checks", OK, "`manage.py check` finds no error")]
    return [Finding("system checks", FAIL, f"{m.id}: {m.msg}", m.hint or "see `manage.py check`")
            for m in messages]


CHECKS = (
    check_django, check_broker, check_management, check_queues, check_worker_replies,
    check_programs, check_beat, check_result_backend, check_time_zones, check_eager,
    check_credentials, check_redis_guarantees,
)


def diagnose(*, broker_url: str, run_dir: Path, timeout: float, debug: bool) -> list[Finding]:
    from apps.doctor.broker import first_broker_url

    # With a cluster's failover list, the doctor examines the first node.
    ctx = Context(broker_url=first_broker_url(broker_url), run_dir=run_dir, timeout=timeout,
                  debug=debug)
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
