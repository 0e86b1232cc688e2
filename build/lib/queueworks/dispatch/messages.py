"""Celery protocol 2 task messages, built the way ``apply_async`` builds them.

``_task_headers`` takes Celery's own headers (``app.amqp.as_task_v2``) and
leaves out the optional ones whose absence means the same ("message
slimming", switched off in the publishing process by
``DISPATCH_FAST_PATHS_OFF=message_slimming``, queueworks/dispatch/switches.py);
``_MessageBuilder`` builds a whole batch of one task's messages.  Used by
the bulk enqueue, the single enqueue and the outbox sweeper.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Mapping

from amqp import Message
from celery.utils.nodenames import anon_nodename
from celery.utils.saferepr import saferepr
from kombu.utils.json import dumps

from queueworks.dispatch.switches import switched_off
from queueworks.conf import TOPOLOGY

# The body's third item (callbacks, errbacks, chain, chord): none of them, which
# Celery's protocol spells ``None`` (a worker reads ``embed or {}``).
_EMBED = None
# What ``as_task_v2`` sends for none of them (the slimming switched off).
_STANDARD_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}

# Celery headers that a worker reads with a default when they are absent
# (celery/worker/request.py, app/task.py Context), with that default.  The
# protocol (docs: internals/protocol) lists them as optional; sending them
# anyway was 9 of a noop message's 19 headers, decoded by every worker for
# every message.  A header with any other value is kept.
_ABSENT_MEANS = {
    "shadow": None, "eta": None, "expires": None, "group_index": None, "retries": 0,
    "timelimit": (None, None), "replaced_task_nesting": 0, "stamped_headers": None,
    "stamps": {},
}



def _celery_app():
    from queueworks.conf import celery_app
    app = celery_app()

    return app


def _resolve_task(task):
    app = _celery_app()
    if isinstance(task, str):
        if task not in app.tasks:
            # Outside a worker, Celery imports an app's tasks module lazily:
            # import it if it belongs to an installed app.
            from django.apps import apps

            module = task.rpartition(".")[0]
            if any(module == f"{config.name}.tasks" for config in apps.get_app_configs()):
                importlib.import_module(module)
        if task not in app.tasks:
            # A Django @task function runs as the Celery task of its dotted name.
            from queueworks.tasks_backend.worker import celery_task_for, django_task_at

            django_task = django_task_at(task)
            if django_task is not None:
                return celery_task_for(app, django_task)
        try:
            return app.tasks[task]
        except KeyError:
            raise ValueError(f"unknown task '{task}'") from None
    return task



def _queue_name(app, task, queue: str | None) -> str:
    """``queue`` or the topology's route for ``task``; a declared queue either way."""
    name = queue or TOPOLOGY.queue_for(task.name)
    if name not in app.amqp.queues:
        raise ValueError(f"unknown queue '{name}'")
    return name


def _slimming() -> bool:
    """Whether message slimming is on in this (the publishing) process."""
    return "message_slimming" not in switched_off()


def _task_body(args: tuple, kwargs: dict, *, slim: bool) -> bytes:
    return dumps((args, kwargs, _EMBED if slim else _STANDARD_EMBED)).encode("utf-8")


def _task_headers(app, task, task_id: str, *, args: tuple, kwargs: dict,
                  kwargsrepr: str | None = None,
                  extra: Mapping[str, object] | None = None, slim: bool = True) -> dict:
    """Celery's protocol 2 headers for one call (``app.amqp.as_task_v2``).

    ``slim``: without the optional headers at their defaults."""
    headers, _properties, _body, _sent_event = app.amqp.as_task_v2(
        task_id, task.name, args=args, kwargs=kwargs,
        time_limit=task.time_limit, soft_time_limit=task.soft_time_limit,
        ignore_result=task.ignore_result, origin=anon_nodename(), kwargsrepr=kwargsrepr,
    )
    if slim:
        for key, default in _ABSENT_MEANS.items():
            if key in headers and _same(headers[key], default):
                del headers[key]
    if extra:
        headers.update(extra)
    return headers


def _same(value, default) -> bool:
    if isinstance(default, tuple):
        return isinstance(value, (list, tuple)) and tuple(value) == default
    return value == default and type(value) is type(default)


def _message_properties(app, priority: int | None) -> dict:
    """The AMQP properties every task message of the project carries."""
    return {
        "content_type": "application/json", "content_encoding": "utf-8",
        "delivery_mode": 2,
        "priority": app.conf.task_default_priority if priority is None else priority,
        "reply_to": "",
        # Publish time (RabbitMQ's head_message_timestamp feeds the wait-time alerts).
        "timestamp": int(time.time()),
    }


class _MessageBuilder:
    """Builds the task messages of one batch: ``builder(task_id, kwargs) -> amqp.Message``.

    The first message's headers come from ``app.amqp.as_task_v2`` (Celery's own
    protocol 2 builder); later ones differ only in id, root id and kwargs repr,
    which is what ``as_task_v2`` would produce for them.  ``prepare`` does the
    part that can fail on bad input (the JSON body), ``message`` the rest, so
    a batch can be checked whole before anything is published.  The slimming
    switch is read once per batch, here.
    """

    def __init__(self, app, task, priority: int,
                 extra_headers: Mapping[str, object] | None = None):
        self.app, self.task, self.extra_headers = app, task, extra_headers
        self.maxsize = app.amqp.kwargsrepr_maxsize
        self.properties = _message_properties(app, priority)
        self.slim = _slimming()
        self.template: dict | None = None

    def prepare(self, kwargs: Mapping[str, object]) -> tuple[bytes, str, dict]:
        """(body, kwargs repr, kwargs); TypeError/ValueError for what JSON cannot carry."""
        if not isinstance(kwargs, Mapping):
            raise TypeError("every item of kwargs_list must be a mapping of keyword arguments")
        kwargs = dict(kwargs)
        body = _task_body((), kwargs, slim=self.slim)
        kwargsrepr = repr(kwargs)
        if len(kwargsrepr) > self.maxsize:
            kwargsrepr = saferepr(kwargs, self.maxsize)
        return body, kwargsrepr, kwargs

    def message(self, task_id: str, prepared: tuple[bytes, str, dict]) -> Message:
        body, kwargsrepr, kwargs = prepared
        if self.template is None:
            self.template = _task_headers(
                self.app, self.task, task_id, args=(), kwargs=kwargs, kwargsrepr=kwargsrepr,
                extra=self.extra_headers, slim=self.slim)
        headers = dict(self.template, id=task_id, root_id=task_id, kwargsrepr=kwargsrepr)
        return Message(body, application_headers=headers, correlation_id=task_id,
                       **self.properties)

    def __call__(self, task_id: str, kwargs: Mapping[str, object]) -> Message:
        return self.message(task_id, self.prepare(kwargs))

