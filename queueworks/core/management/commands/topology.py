from django.core.management.base import BaseCommand

from queueworks.dispatch.compat import celery as compat_celery
from queueworks.conf import TOPOLOGY
from queueworks.core.time_limits import route_time_limits


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


class Command(BaseCommand):
    help = "Print queues -> workers -> tasks -> schedules as declared in the project's topology (QUEUEWORKS_TOPOLOGY)."

    def handle(self, *args, **options):
        t = TOPOLOGY
        queue_rows = [
            [q.name, ", ".join(w.name for w in t.consumers_of(q.name)) or "NONE (stranded!)",
             str(sum(r.queue == q.name for r in t.routes)), q.purpose]
            for q in t.queues
        ]
        worker_rows = [
            [w.name, ",".join(w.queues), w.pool,
             # An autoscaling pool shows its range, min-max.
             # A program of processes: concurrency x processes (a balanced one: -its maximum).
             f"{w.autoscale[1]}-{w.autoscale[0]}" if w.autoscale else str(w.concurrency) + (
                 f" x {w.processes}" + (f"-{t.process_slots(w)}" if t.process_slots(w) > w.processes
                                        else "")
                 if t.process_slots(w) > 1 else ""),
             str(w.prefetch_multiplier),
             str(w.max_tasks_per_child or "-"), f"{w.soft_time_limit}/{w.time_limit}s"]
            for w in t.workers
        ]
        # The limits each task runs under, a derived soft limit included
        # ("-": the worker's own).
        route_rows = [
            [r.task, r.queue, "late" if r.acks_late else "early",
             "/".join(f"{limit:g}" if limit else "-" for limit in route_time_limits(t, r))]
            for r in t.routes
        ]
        schedule_rows = [
            [s.name, s.task, s.queue, _crontab_text(s.schedule)] for s in t.schedules
        ]
        out = [
            "QUEUES", _table(["queue", "consumed by", "routes", "purpose"], queue_rows), "",
            "WORKERS", _table(["program", "queues", "pool", "conc", "prefetch", "max-tasks",
                               "soft/hard"], worker_rows), "",
            "TASKS", _table(["task", "queue", "ack", "soft/hard"], route_rows), "",
            "SCHEDULES", _table(["entry", "task", "queue", "crontab (m h dom mon dow)"],
                                schedule_rows),
        ]
        self.stdout.write("\n".join(out))


def _crontab_text(schedule) -> str:
    fields = compat_celery.crontab_fields(schedule)
    if fields is None:  # an interval (timedelta)
        return f"every {schedule}"
    return " ".join(fields[name] for name, _ in compat_celery.CRONTAB_FIELDS)
