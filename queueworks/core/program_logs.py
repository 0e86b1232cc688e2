"""The last error a supervisor program wrote to its own log.

A program in BACKOFF or FATAL says only that it keeps dying; why is in its
log, usually as the last line of a traceback (``amqp.exceptions.PreconditionFailed:
Queue.declare: (406) PRECONDITION_FAILED - inequivalent arg ...``).  Read
through supervisord's XML-RPC ``tailProcessStdoutLog`` (programs log stdout
and stderr together), so it works wherever supervisord is reachable.
"""

from __future__ import annotations

import re

TAIL_BYTES = 16_000
CRASH_STATES = ("BACKOFF", "FATAL")
# A program RUNNING again this soon after it stopped may be crash-looping: a
# worker slower to fail than supervisor's startsecs (10 s) goes RUNNING ->
# EXITED -> STARTING -> RUNNING, never BACKOFF (supervisord resets the exit
# status on every spawn, so only the timing and the log tell).
RECENT_CRASH_SECONDS = 120
# "amqp.exceptions.PreconditionFailed: ..." / "KeyError: 'x'" / "SystemExit: 1"
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Failed|Exit|Interrupt|Refused|"
                            r"Denied|NotFound|Timeout|Warning)\b.*")
LOGGED_ERROR = re.compile(r"\b(CRITICAL|ERROR)\b")


def last_error(text: str) -> str | None:
    """The last exception line of ``text`` (a log tail), else its last ERROR line."""
    exception, logged = None, None
    in_traceback = False
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line:
            continue
        if line.startswith("Traceback (most recent call last)"):
            in_traceback = True
            continue
        if in_traceback:
            if line[0].isspace():
                continue
            in_traceback = False
            if EXCEPTION_LINE.match(line) or ":" in line:
                exception = line
                continue
        if EXCEPTION_LINE.match(line):
            exception = line
        elif LOGGED_ERROR.search(line):
            logged = line
    return exception or logged


def recently_restarted(info: dict) -> bool:
    """RUNNING, and (re)started within RECENT_CRASH_SECONDS of its last stop or exit."""
    return bool(info["statename"] == "RUNNING" and info.get("stop")
                and info["now"] - info["stop"] < RECENT_CRASH_SECONDS
                and info.get("start", 0) >= info["stop"])


def shows_last_error(info: dict) -> bool:
    """Is the program's last error worth showing next to its state?

    STARTING too: a crash loop spends most of its time starting again.
    """
    return info["statename"] in CRASH_STATES + ("STARTING", "EXITED") or recently_restarted(info)
