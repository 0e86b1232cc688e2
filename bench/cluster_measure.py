"""The producer and the counting of bench/cluster.py: the test bed driver,
publishing probes through the failover URL list, and each scenario's result
counted from the database and the broker (with the raw evidence kept)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TESTBED = PROJECT_ROOT / "deploy" / "testbed" / "testbed.sh"


@dataclass
class Result:
    scenario: str
    sent: int
    executed: int
    duplicated_effects: int
    ran_twice: int
    seconds: float
    split: dict[str, int]
    publish_errors: int = 0
    notes: list[str] = field(default_factory=list)
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return self.sent - self.executed


class Testbed:
    """Drives deploy/testbed/testbed.sh with one fixed environment."""

    def __init__(self, env: dict[str, str]):
        self.env = env

    def run(self, *args: str, timeout: float = 300) -> str:
        completed = subprocess.run(
            ["bash", str(TESTBED), *args], env=self.env, capture_output=True, text=True,
            timeout=timeout,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"testbed.sh {' '.join(args)} failed ({completed.returncode}):\n"
                               f"{completed.stdout}\n{completed.stderr}")
        return completed.stdout

    def producer_env(self) -> dict[str, str]:
        environment = {}
        for line in self.run("env").splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            environment[key] = value.strip("'")
        return environment


def node_port(base_port: int, node: int) -> int:
    return base_port + node


def setup_django(producer_env: dict[str, str]) -> None:
    os.environ.update(producer_env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "projectname.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "testbed-only-secret-key")
    import django

    django.setup()


def producer_port() -> int:
    """The broker port the producer's pooled connection is attached to."""
    from projectname.celery import app

    with app.producer_or_acquire() as producer:
        producer.connection.ensure_connection(max_retries=3)
        try:
            return producer.connection.connection.transport.sock.getpeername()[1]
        except (AttributeError, OSError):
            return 0


#: Every token whose publish returned: the evidence a test recounts from.
PUBLISHED: list[str] = []


def publish(tokens: list[str], *, on_progress=None) -> tuple[int, int]:
    from queueworks.core.tasks import probe

    sent = errors = 0
    for index, token in enumerate(tokens):
        try:
            probe.apply_async(args=[token])
            sent += 1
            PUBLISHED.append(token)
        except Exception as exc:  # noqa: BLE001 - counted and reported, never hidden
            errors += 1
            print(f"  publish {token} failed: {exc!r}", file=sys.stderr)
        if on_progress:
            on_progress(index + 1)
    return sent, errors


def finished_count(prefix: str) -> int:
    from queueworks.core.models import ProbeRun

    return ProbeRun.objects.filter(token__startswith=prefix, finished_at__isnull=False).count()


def wait_finished(prefix: str, expected: int, *, stall_timeout: float) -> None:
    """Until every task ran, or nothing progressed for ``stall_timeout`` s."""
    last, last_change = -1, time.monotonic()
    while True:
        done = finished_count(prefix)
        if done >= expected:
            return
        if done != last:
            last, last_change = done, time.monotonic()
        elif time.monotonic() - last_change > stall_timeout:
            print(f"  no progress for {stall_timeout:.0f}s at {done}/{expected}", file=sys.stderr)
            return
        time.sleep(1)


def measure(name: str, prefix: str, sent: int, errors: int, started: float,
            notes: list[str]) -> Result:
    from django.db.models import Count, Max, Q

    from queueworks.core.models import ProbeRun

    runs = ProbeRun.objects.filter(token__startswith=prefix)
    finished = runs.filter(finished_at__isnull=False)
    last = finished.aggregate(last=Max("finished_at"))["last"]
    rows = runs.count()
    distinct = runs.values("token").distinct().count()
    split = Counter(dict(finished.values_list("hostname").annotate(n=Count("id"))))
    # Each host's longest pause between two finished tasks: how long it was out
    # (reconnecting to another node, or cut off).
    pauses: dict[str, float] = {}
    previous: dict[str, float] = {}
    for hostname, finished_at in finished.order_by("finished_at").values_list("hostname", "finished_at"):
        at = finished_at.timestamp()
        if hostname in previous:
            pauses[hostname] = max(pauses.get(hostname, 0.0), at - previous[hostname])
        previous[hostname] = at
    # A host that stopped finishing tasks paused until the scenario's end.
    end = max(previous.values(), default=0.0)
    for hostname, at in previous.items():
        pauses[hostname] = max(pauses.get(hostname, 0.0), end - at)
    if name:
        notes.append("longest pause per worker: " + ", ".join(
            f"{host_short(h)} {p:.1f}s" for h, p in sorted(pauses.items())))
    # Who ran the tasks that ran twice: the probe row keeps the first worker,
    # the result backend (result_extended) the worker that stored the result.
    if name:
        from django_celery_results.models import TaskResult

        twice = []
        for token, first in runs.filter(deliveries__gt=1).values_list("token", "hostname")[:10]:
            # task_args is the repr/JSON of the args: match the quoted token exactly.
            result_row = TaskResult.objects.filter(
                Q(task_args__contains=f'"{token}"') | Q(task_args__contains=f"'{token}'"),
                task_name="queueworks.core.tasks.probe").first()
            stored_by = (result_row.worker if result_row else None) or "?"
            twice.append(f"{token.rsplit('-', 1)[1]}: {host_short(first)} then {host_short(stored_by)}")
        if twice:
            notes.append("ran twice (first worker, then the one that stored the result): "
                         + "; ".join(twice))
    # From the first publish to the last finished task (not to our last poll).
    seconds = (last.timestamp() - started) if last is not None else time.time() - started
    return Result(
        scenario=name, sent=sent, executed=finished.values("token").distinct().count(),
        duplicated_effects=rows - distinct,
        ran_twice=runs.filter(deliveries__gt=1).count(), seconds=seconds,
        split=dict(sorted(split.items())), publish_errors=errors, notes=notes,
        extra={"longest_pause": {h: round(p, 1) for h, p in sorted(pauses.items())},
               "evidence": evidence(prefix)},
    )


def evidence(prefix: str) -> dict[str, object]:
    """The raw material behind a row, for a reader (or test) to count again:
    what was published, every probe row, every stored result, what is left
    in the broker's queues."""
    import re

    from django_celery_results.models import TaskResult

    from queueworks.core.models import ProbeRun

    runs = ProbeRun.objects.filter(token__startswith=prefix)
    pattern = re.compile(re.escape(prefix) + r"\d+")
    results: dict[str, list[str]] = {}
    for status, args in TaskResult.objects.filter(
            task_name="queueworks.core.tasks.probe", task_args__contains=prefix).values_list(
            "status", "task_args"):
        results.setdefault(status, []).extend(pattern.findall(args or ""))
    return {
        "published": [token for token in PUBLISHED if token.startswith(prefix)],
        "row_tokens": list(runs.values_list("token", flat=True)),
        "finished_tokens": list(runs.filter(finished_at__isnull=False)
                                .values_list("token", flat=True)),
        "result_tokens": results,
        "queue_depths": queue_depths(),
    }


def queue_depths() -> dict[str, int | None]:
    """Ready messages per topology queue now (passive declare; None: no such queue)."""
    from projectname.celery import app

    depths: dict[str, int | None] = {}
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=3)
        channel = connection.channel()
        for name in app.amqp.queues:
            try:
                depths[name] = channel.queue_declare(name, passive=True).message_count
            except connection.channel_errors:
                depths[name] = None
                channel = connection.channel()
    return depths


def host_short(hostname: str) -> str:
    return hostname.split("@", 1)[1] if "@" in hostname else hostname
