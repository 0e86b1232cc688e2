"""Doctor checks of the broker, its queues and the workers' replies."""

from __future__ import annotations

from urllib.parse import urlsplit

from queueworks.core.broker_state import MIGRATE_FIX
from queueworks.doctor.findings import (
    FAIL, OK, SUPERVISORCTL, WARN, Context, Finding, _broker_identity, _describe, _safe_url,
)


# -- broker ------------------------------------------------------------------
def check_broker(ctx: Context) -> list[Finding]:
    from kombu import Connection

    from queueworks.doctor.broker import is_redis

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

    from queueworks.doctor.broker import is_redis

    if is_redis(ctx.broker_url):
        return [Finding("management", OK, "not used: the broker is Redis")]
    from queueworks.core.broker_state import management_api

    # The monitoring user (QUEUEWORKS_RABBITMQ_MANAGEMENT_USER), as /ops/ and
    # the queue-arguments check read it; the broker URL's user without one.
    api = management_api(ctx.broker_url)
    base, user, password = api.url, api.user or "guest", api.password or "guest"
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
    from queueworks.doctor.broker import is_redis
    from queueworks.conf import TOPOLOGY

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
        if queue.fair_buckets and not redis:
            findings.append(_fair_finding(queue, counts, programs, start))
    return findings if redis else findings + _stranded_findings(ctx)


def _fair_finding(queue, counts, programs: str, start: str) -> Finding:
    """Fair sharing's sub-queues (queueworks/limits/fair.py): each needs a consumer."""
    names = queue.fair_queue_names()
    missing = [name for name in names if name not in counts]
    idle = [name for name in names if name in counts and counts[name][1] == 0]
    waiting = sum(counts[name][0] for name in names if name in counts)
    subject = f"fair sub-queues of {queue.name}"
    if missing:
        return Finding(subject, FAIL, f"not declared on the broker: {', '.join(missing)}",
                       f"restart the worker(s) of {queue.name} ({programs}) with the declared "
                       "topology: `manage.py apply_topology`")
    if idle:
        return Finding(subject, FAIL, f"0 consumers on {', '.join(idle)}",
                       f"start {programs}: {start}")
    return Finding(subject, OK, f"{len(names)} sub-queues consumed, {waiting} message(s) waiting")


def _stranded_findings(ctx: Context) -> list[Finding]:
    """Fair sub-queues the topology no longer declares (queueworks/limits/fair_stranded.py):
    no worker consumes them, so what they hold would wait forever."""
    from kombu import Connection

    from queueworks.conf import TOPOLOGY
    from queueworks.core.broker_state import management_api
    from queueworks.limits.fair_stranded import stranded_fair_queues

    with Connection(ctx.broker_url, connect_timeout=ctx.timeout) as connection:
        stranded = stranded_fair_queues(connection, TOPOLOGY, broker_url=ctx.broker_url)
    vhost = management_api(ctx.broker_url).vhost
    findings = []
    for parent in sorted({queue.parent for queue in stranded}):
        mine = [queue for queue in stranded if queue.parent == parent]
        waiting = sum(queue.ready for queue in mine)
        names = ", ".join(queue.name for queue in mine)
        subject = f"stranded sub-queues of {parent}"
        if waiting:
            findings.append(Finding(
                subject, FAIL, f"{waiting} message(s) in {names}, which the topology no longer "
                "declares: no worker consumes them",
                "`manage.py migrate_queues` moves them to the sub-queues declared now"))
        else:
            findings.append(Finding(
                subject, WARN, f"{names} empty but still on the broker",
                "delete them once every process runs the current topology (a process still "
                "on the old one may publish there): "
                + "; ".join(f"`rabbitmqctl delete_queue --vhost {vhost} {queue.name}`"
                            for queue in mine)))
    return findings


def _argument_findings(ctx: Context) -> list[Finding]:
    """Live type and arguments of every topology queue against its declaration."""
    from queueworks.core.broker_state import BrokerStateError, queue_conflicts, queue_states
    from queueworks.conf import TOPOLOGY

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
    from queueworks.conf import TOPOLOGY

    names = sorted({queue for worker in TOPOLOGY.workers if worker.name in worker_names
                    for queue in worker.queues if queue in ctx.conflicts})
    if not names:
        return ""
    return (f"the argument conflict on queue {', '.join(names)} "
            f"({', '.join(worker_names)} cannot declare it)")


def _amqp_queue_counts(ctx: Context) -> dict[str, tuple[int, int]]:
    from kombu import Connection

    from queueworks.core.broker_state import queue_counts
    from queueworks.conf import TOPOLOGY

    with Connection(ctx.broker_url, connect_timeout=ctx.timeout) as connection:
        # Fair sharing's sub-queues too (queueworks/limits/fair.py).
        names = TOPOLOGY.queue_names() + [sub for queue in TOPOLOGY.queues
                                          for sub in queue.fair_queue_names()]
        counts = queue_counts(connection, names)
    return {name: count for name, count in counts.items() if count is not None}


def _redis_queue_counts(ctx: Context) -> dict[str, tuple[int, int]]:
    """Redis has no consumer count: ask the workers which queues they consume."""
    from kombu import Connection

    from queueworks.conf import celery_app
    app = celery_app()
    from queueworks.conf import TOPOLOGY

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
    from queueworks.conf import celery_app
    app = celery_app()
    from queueworks.conf import TOPOLOGY

    if not ctx.broker_ok:
        return []
    replies = app.control.ping(timeout=ctx.timeout) or []
    nodes = sorted(node for reply in replies for node in reply)
    findings = []
    for worker in TOPOLOGY.workers:
        mine = [node for node in nodes if TOPOLOGY.program_of_node(node) == worker.name]
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
