"""The variants of bench/main_lane.py: main_worker's rendered command with
one thing changed per row."""

from __future__ import annotations

from dataclasses import dataclass, field

# The bulk lane's pool (queueworks.dispatch.pool.SoloPool; not imported: that
# needs Django set up first).
SOLO_POOL = "queueworks.dispatch.pool:SoloPool"


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    # Command-line options replacing the rendered ones ("--pool" -> "--pool=threads").
    options: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    headers: dict[str, object] = field(default_factory=dict)
    postgres: bool = False
    # Differs from the deployed lane only in what the worker holds: its
    # priority overtaking is measured too.
    overtaking: bool = False
    # Worker processes started with the command (each its own hostname):
    # the solo design runs one per core instead of one prefork pool.
    processes: int = 1


def recorded_header() -> str:
    from queueworks.taskapi.models import RECORDED_HEADER

    return RECORDED_HEADER


# queueworks.core.results_backend.UPSERT_BACKEND (not imported: Django is set up later).
UPSERT_BACKEND = "queueworks.core.results_backend:UpsertDatabaseBackend"


def _deployed_headroom() -> int:
    from projectname.topology import TOPOLOGY

    return TOPOLOGY.worker_named("main_worker").prefetch_headroom


def _headroom(n: int) -> Variant:
    return Variant(f"headroom-{n}", f"... prefetch 1 + {n} headroom",
                   env={"WORKER_PREFETCH_HEADROOM": str(n)}, overtaking=True)


VARIANTS = (
    Variant("deployed", f"main_worker as deployed (prefork -c 2, prefetch 1 + "
                        f"{_deployed_headroom()} headroom, priorities, acks late, task events "
                        "only while Flower listens: none here, INFO logs)", overtaking=True),
    Variant("events-on", "... task events on (as while Flower listens)",
            env={"CELERY_WORKER_SEND_TASK_EVENTS": "1", "WORKER_TASK_EVENTS_LEASE": "0"}),
    Variant("no-headroom", "... prefetch 1, no headroom", env={"WORKER_PREFETCH_HEADROOM": "0"},
            overtaking=True),
    *(_headroom(n) for n in (2, 4, 6)),
    Variant("plain-prefetch1", "... no headroom and task events always on",
            env={"WORKER_PREFETCH_HEADROOM": "0", "CELERY_WORKER_SEND_TASK_EVENTS": "1",
                 "WORKER_TASK_EVENTS_LEASE": "0"}),
    Variant("prefetch4", "... prefetch x4 (no headroom)",
            {"--prefetch-multiplier": "4"}, env={"WORKER_PREFETCH_HEADROOM": "0"},
            overtaking=True),
    Variant("threads", "... pool threads -c 2 (no hard time limit)", {"--pool": "threads"}),
    # Prefetch 2 (the prefetch count of prefork -c 2): with 1, the solo pool
    # idled about a second between acks-late tasks.
    Variant("solo", "... pool solo, prefetch 2 (one at a time, no hard time limit)",
            {"--pool": "solo", "--concurrency": "1", "--prefetch-multiplier": "2"},
            env={"WORKER_PREFETCH_HEADROOM": "0"}),
    # The bulk lane's process design for the user-facing lane: one solo
    # process per core (SoloPool: SIGALRM soft/hard limits, a watchdog ending
    # a process stuck past its hard limit, recycling past
    # --max-memory-per-child), prefetch 2 each: the same 4 messages held as
    # prefork -c 2 + headroom 2, so a priority-9 task overtakes alike.
    Variant("solo-procs", "... 2 solo processes (SoloPool: hard limits, watchdog, memory "
            "recycling), prefetch 2 each, no headroom",
            {"--pool": "custom", "--concurrency": "1", "--prefetch-multiplier": "2"},
            env={"CELERY_CUSTOM_WORKER_POOL": SOLO_POOL, "WORKER_PREFETCH_HEADROOM": "0"},
            overtaking=True, processes=2),
    Variant("solo-procs-events", "... the same 2 solo processes, task events on (as while "
            "Flower listens)",
            {"--pool": "custom", "--concurrency": "1", "--prefetch-multiplier": "2"},
            env={"CELERY_CUSTOM_WORKER_POOL": SOLO_POOL, "WORKER_PREFETCH_HEADROOM": "0",
                 "CELERY_WORKER_SEND_TASK_EVENTS": "1", "WORKER_TASK_EVENTS_LEASE": "0"},
            processes=2),
    Variant("acks-early", "... acks early (a crash loses the task)",
            env={"BENCH_MAIN_ACKS_EARLY": "1",
                 "DJANGO_SETTINGS_MODULE": "bench.main_lane_settings"}),
    Variant("warning-logs", "... WARNING logs", {"--loglevel": "WARNING"}),
    Variant("results-sqlite", "... results kept, SQLite (stock django-db backend)",
            headers={"ignore_result": False}, env={"CELERY_RESULT_BACKEND": "django-db"}),
    Variant("results-sqlite-upsert", "... results kept, SQLite, one upsert per state",
            headers={"ignore_result": False}, env={"CELERY_RESULT_BACKEND": UPSERT_BACKEND}),
    Variant("results-postgres", "... results kept, PostgreSQL (stock django-db backend)",
            headers={"ignore_result": False}, env={"CELERY_RESULT_BACKEND": "django-db"},
            postgres=True),
    Variant("results-postgres-upsert", "... results kept, PostgreSQL, one upsert per state",
            headers={"ignore_result": False}, env={"CELERY_RESULT_BACKEND": UPSERT_BACKEND},
            postgres=True),
    Variant("no-timer-compaction", "... cancelled time-limit timers kept until due "
            "(stock Celery)", env={"WORKER_TIMER_COMPACTION": "off"}),
    Variant("cancel-lookup", "... every message looked up for a cancel (Task API's header)",
            headers={"RECORDED": True}),
)
BY_NAME = {variant.name: variant for variant in VARIANTS}
