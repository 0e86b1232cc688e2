"""Flower, limited to what the Task API would let an operator do.

Flower's Basic auth (FLOWER_BASIC_AUTH, operators only) still decides who
gets in; these handlers decide what they may do there.  They are mounted in
front of Flower's own routes through Tornado's public
``Application.add_handlers`` (see ``serve``):

* task start (``/api/task/apply``, ``/api/task/async-apply``,
  ``/api/task/send-task``): only tasks of the Task API's allowlist
  (queueworks/taskapi/allowlist.py), with arguments that match its declared
  parameters, on one of its queues.  Test-only tasks are never allowlisted.
* worker shutdown, pool restart/grow/shrink/autoscale, consumer changes,
  time and rate limits, revoke and abort: refused for everyone.  They have
  per-action permissions and an audit trail in the Task API (cancel) and the
  /ops/ dashboard (program control), which Flower has no way to check.

Reading (workers, tasks, queues, broker) is Flower's, unchanged.
"""

from __future__ import annotations

import atexit
import signal

from flower.api import tasks as flower_tasks
from flower.api import BaseApiHandler
from tornado import web
from tornado.escape import json_decode

from queueworks.taskapi.allowlist import allowed

# Options a start request may carry besides args/kwargs: the queue (one of
# the task's own) and, for the waiting apply, how long Flower waits.
START_OPTIONS = {"queue"}
APPLY_OPTIONS = START_OPTIONS | {"timeout"}

REFUSED_CONTROL = (
    r"/api/worker/shutdown/(.+)",
    r"/api/worker/pool/restart/(.+)",
    r"/api/worker/pool/grow/(.+)",
    r"/api/worker/pool/shrink/(.+)",
    r"/api/worker/pool/autoscale/(.+)",
    r"/api/worker/queue/add-consumer/(.+)",
    r"/api/worker/queue/cancel-consumer/(.+)",
    r"/api/task/abort/(.+)",
    r"/api/task/timeout/(.+)",
    r"/api/task/rate-limit/(.+)",
    r"/api/task/revoke/(.+)",
)


def start_request_errors(task_name: str, body: bytes, accepted_options: set[str]) -> tuple[int, dict] | None:
    """(status, JSON body) refusing a start request, or None when it may go ahead."""
    entry = allowed(task_name)
    if entry is None:
        return 403, {"task": [f"'{task_name}' is not on the Task API's allowlist; "
                              "Flower starts allowlisted tasks only."]}
    try:
        payload = json_decode(body) if body else {}
    except ValueError:
        return 400, {"body": ["must be a JSON object"]}
    except RecursionError:  # the decoder recurses once per level of nesting
        return 400, {"body": ["nested too deeply"]}
    if not isinstance(payload, dict):
        return 400, {"body": ["must be a JSON object"]}
    args, kwargs = payload.pop("args", []), payload.pop("kwargs", {})
    if not isinstance(args, list):
        return 400, {"args": ["must be an array"]}
    if not isinstance(kwargs, dict):
        return 400, {"kwargs": ["must be an object"]}
    errors: dict[str, list[str]] = {}
    for option in sorted(set(payload) - accepted_options):
        errors[option] = [f"not accepted here (accepted: args, kwargs, {', '.join(sorted(accepted_options))})"]
    queue = payload.get("queue")
    if queue is not None and queue not in entry.queues:
        errors["queue"] = [f"must be one of {', '.join(entry.queues)}"]
    _, binding_errors = entry.bind(args, kwargs)
    errors.update(binding_errors)
    return (400, errors) if errors else None


class _AllowlistedStart:
    """Mixed in before a Flower start handler: refuse, else run Flower's own post."""

    accepted_options = START_OPTIONS

    @web.authenticated
    async def post(self, taskname):
        refusal = start_request_errors(taskname, self.request.body, self.accepted_options)
        if refusal is not None:
            status, body = refusal
            self.set_status(status)
            self.finish(body)
            return
        await super().post(taskname)


class AllowlistedApply(_AllowlistedStart, flower_tasks.TaskApply):
    accepted_options = APPLY_OPTIONS


class AllowlistedAsyncApply(_AllowlistedStart, flower_tasks.TaskAsyncApply):
    pass


class AllowlistedSendTask(_AllowlistedStart, flower_tasks.TaskSend):
    pass


class RefusedControl(BaseApiHandler):
    @web.authenticated
    async def post(self, *args):
        self.set_status(403)
        self.finish({"detail": "Flower is read-only for control: cancel tasks through the Task API "
                               "(/api/v1/) and start/stop programs on the /ops/ dashboard, which "
                               "check your permissions."})


def guarded_handlers(*, url_prefix: str = "") -> list[tuple]:
    """The guard's rules, under Flower's ``--url_prefix`` (FLOWER_URL_PREFIX)
    as Flower puts its own routes there: a rule without the prefix would
    never match, and Flower's own handler would answer instead.  The prefix
    goes in unescaped, exactly as Flower writes it into its own patterns, so
    that every path one of Flower's rules matches, the guard's rule matches too."""
    prefix = "/" + url_prefix.strip("/") if url_prefix.strip("/") else ""
    return [
        (prefix + r"/api/task/apply/(.+)", AllowlistedApply),
        (prefix + r"/api/task/async-apply/(.+)", AllowlistedAsyncApply),
        (prefix + r"/api/task/send-task/(.+)", AllowlistedSendTask),
        *[(prefix + pattern, RefusedControl) for pattern in REFUSED_CONTROL],
    ]


def serve(celery_app, argv: list[str]) -> None:
    """Run Flower in this process, as `celery flower` does, with the guarded handlers first."""
    from flower.app import Flower
    from flower.command import (
        apply_env_options, apply_options, extract_settings, setup_logging, sigterm_handler,
    )
    from flower.urls import settings as flower_settings
    from tornado.options import options

    apply_env_options()
    apply_options("flower", argv)
    extract_settings()
    setup_logging()
    flower_app = Flower(capp=celery_app, options=options, **flower_settings)
    # Tornado tries these rules before the ones Flower was created with.
    flower_app.add_handlers(r".*", guarded_handlers(url_prefix=options.url_prefix or ""))
    atexit.register(flower_app.stop)
    signal.signal(signal.SIGTERM, sigterm_handler)
    flower_app.start_http_server()
    try:
        flower_app.start()
    except (KeyboardInterrupt, SystemExit):
        pass
