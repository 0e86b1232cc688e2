"""Users, tokens and HTTP helpers for the Task API tests."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.support.live import free_port, serving, wait_for


@dataclass
class ApiUser:
    user: object
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}


def _make_user(username: str, *, operator: bool = False, viewer: bool = False,
               staff: bool = False) -> ApiUser:
    """``operator``: the "task operators" group; ``viewer``: "task viewers"."""
    from django.contrib.auth.models import Group, Permission, User
    from queueworks.apitokens.services import api_token_create

    # No password (hashing is slow); tests use tokens or force_login.
    user = User.objects.create_user(username, is_staff=staff)
    groups = {"task operators": ("operate_tasks", "view_all_tasks")} if operator else {}
    if viewer:
        groups["task viewers"] = ("view_all_tasks",)
    for name, codenames in groups.items():
        # Created by migrations; transactional tests flush them, so recreate
        # them the same way (test_migrations.py tests the migrations themselves).
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*Permission.objects.filter(
            content_type__app_label="taskapi", codename__in=codenames))
        user.groups.add(group)
    return ApiUser(user=user, token=api_token_create(user=user, name="tests")[1])


@pytest.fixture
def operator(db):
    return _make_user("operator", operator=True)


@pytest.fixture
def reader(db):
    return _make_user("reader")


@pytest.fixture
def staff(db):
    return _make_user("staffer", staff=True)


@pytest.fixture
def client_for():
    from rest_framework.test import APIClient

    def make(api_user: ApiUser | None = None) -> APIClient:
        client = APIClient()
        if api_user is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Token {api_user.token}")
        return client

    return make


class Http:
    """requests against a running web server, JSON in and out."""

    def __init__(self, base: str, api_user: ApiUser | None = None):
        self.base = base
        self.session = requests.Session()
        if api_user is not None:
            self.session.headers.update(api_user.headers)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.session.get(self.base + path, timeout=kwargs.pop("timeout", 30), **kwargs)

    def post(self, path: str, json=None, **kwargs) -> requests.Response:
        return self.session.post(self.base + path, json=json,
                                 timeout=kwargs.pop("timeout", 30), **kwargs)

    def wait_state(self, task_id: str, states: set[str], timeout: float = 60,
                   seen: list | None = None) -> dict:
        """Poll the task until its state is in ``states``; records what it saw."""
        box = {}

        def reached():
            body = self.get(f"/api/v1/tasks/{task_id}/").json()
            if seen is not None and (not seen or seen[-1] != body["state"]):
                seen.append(body["state"])
            box["body"] = body
            return body["state"] in states

        try:
            wait_for(reached, timeout, interval=0.1, message=f"{task_id} in {states}")
        except TimeoutError as error:
            raise AssertionError(f"{error}; last: {box.get('body')}; seen: {seen}") from None
        return box["body"]


@contextmanager
def web_server(env: dict[str, str]):
    """A gunicorn serving the project with ``env`` (e.g. another broker URL)."""
    port = free_port()
    bin_dir = os.path.dirname(sys.executable)
    base = f"http://127.0.0.1:{port}"
    with serving([os.path.join(bin_dir, "gunicorn"), "projectname.wsgi:application",
                  f"--bind=127.0.0.1:{port}", "--workers=1", "--timeout=60"],
                 env={**env, "WEB_PORT": str(port)},
                 log_path=Path(env.get("RUN_DIR", "/tmp")) / f"taskapi-web-{port}.log",
                 url=base + "/health/", timeout=60, message="test web server"):
        yield base


@pytest.fixture
def live_http(live_system):
    def make(api_user: ApiUser | None = None) -> Http:
        return Http(f"http://127.0.0.1:{live_system.web_port}", api_user)

    return make


def row_counts() -> tuple[int, int]:
    """Task API records, and result rows other than those of beat's own jobs
    (the live system's beat keeps running them, e.g. every minute)."""
    from django_celery_results.models import TaskResult

    from queueworks.taskapi.models import TaskRecord
    from projectname.topology import TOPOLOGY

    beat_tasks = {entry.task for entry in TOPOLOGY.schedules}
    return (TaskRecord.objects.count(),
            TaskResult.objects.exclude(task_name__in=beat_tasks).count())
