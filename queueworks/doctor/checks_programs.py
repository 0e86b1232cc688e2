"""Doctor checks of the programs under supervisord on this host, and of beat."""

from __future__ import annotations

from datetime import timedelta

from queueworks.conf import project_name
from queueworks.core.broker_state import MIGRATE_FIX
from queueworks.core.supervisord_client import Supervisord
from queueworks.doctor.findings import (
    FAIL, OK, SUPERVISORCTL, SUPPORT_PROGRAMS, WARN, Context, Finding, _describe,
)
from queueworks.doctor.checks_broker import _conflict_causes


def check_programs(ctx: Context) -> list[Finding]:
    from queueworks.core.program_logs import shows_last_error
    from queueworks.core.supervisor import programs
    from queueworks.conf import TOPOLOGY

    socket_path = ctx.run_dir / "supervisor.sock"
    placement = _placement_findings(ctx)
    if placement is not None:
        return placement
    if not socket_path.exists():
        return [Finding("supervisor", WARN, f"no supervisord socket at {socket_path}: "
                        "program states not checked",
                        "`make run` (or `python manage.py supervisord`); with systemd units: "
                        f"`systemctl status '{project_name()}-*'`; or pass --run-dir")]
    supervisord = Supervisord(socket_path, timeout=ctx.timeout)
    try:
        states = supervisord.process_info()
    except Exception as error:  # noqa: BLE001 - any failure is the finding
        return [Finding("supervisor", FAIL, f"supervisord at {socket_path} does not answer: "
                        f"{_describe(error)}", "restart it: `make run`")]
    ctx.supervisor_states = states
    findings = []
    for program in programs(TOPOLOGY):
        if not ctx.runs_here(program.name):
            where = ", ".join(h.name for h in ctx.inventory.hosts_running(program.name)) or "no host"
            findings.append(Finding(f"program {program.name}", OK,
                                    f"runs on {where}, not {ctx.host}: judged by doctor there"))
            continue
        info = ctx.supervisor_states.get(program.name)
        state = info["statename"] if info else "MISSING"
        error = supervisord.last_error(program.name) if info and shows_last_error(info) else None
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
            # supervisorctl names a group's processes "<program>:*".
            name, log = ((program.name, program.name) if program.processes == 1
                         else (f"{program.name}:*", f"{program.name}_<n>"))
            fix = f"`{SUPERVISORCTL} start {name}`; see run/log/{log}.log"
        findings.append(Finding(f"program {program.name}", status, message, fix))
    return findings


def _placement_findings(ctx: Context) -> list[Finding] | None:
    """With an inventory, doctor must know which host it runs on."""
    if ctx.inventory is None:
        return None
    hosts = ", ".join(ctx.inventory.host_names())
    if ctx.host is None:
        return [Finding("supervisor", FAIL, "an inventory is declared but doctor does not know "
                        f"which host this is (hosts: {hosts})",
                        "set DEPLOY_HOST in the env file, or pass --host")]
    if ctx.host not in ctx.inventory.host_names():
        return [Finding("supervisor", FAIL, f"host {ctx.host!r} is not in the inventory "
                        f"(hosts: {hosts})", "fix DEPLOY_HOST or --host")]
    return None


# -- beat ------------------------------------------------------------------------
def check_beat(ctx: Context) -> list[Finding]:
    from django.db import DatabaseError
    from django.utils import timezone

    from queueworks.doctor.selectors import beat_heartbeat_latest, beat_heartbeats_recent
    from queueworks.conf import TOPOLOGY
    from queueworks.core.builtin import BEAT_HEARTBEAT_SECONDS

    stale_after = timedelta(seconds=4 * BEAT_HEARTBEAT_SECONDS)
    start_fix = f"`{SUPERVISORCTL} start beat`; see run/log/beat.log"
    info = (ctx.supervisor_states or {}).get("beat")
    # beat on another host: its heartbeats (below) still say whether it ticks.
    beat_here = ctx.runs_here("beat")
    if beat_here and ctx.supervisor_states is not None and (
            info is None or info["statename"] != "RUNNING"):
        state = info["statename"] if info else "not configured"
        return [Finding("beat", FAIL, f"beat program is {state}: no schedule is sent", start_fix)]
    from queueworks.doctor.broker import broker_identity

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
    from queueworks.conf import TOPOLOGY

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
