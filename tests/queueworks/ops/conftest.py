"""Fixtures for the operations dashboard tests."""

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
OPS_PERMISSIONS = ("ops.control_programs", "ops.requeue_dead_letters", "ops.requeue_any_dead_letter",
                   "ops.view_auditentry", "taskapi.view_all_tasks", "taskapi.operate_tasks")


@pytest.fixture
def make_user(django_user_model):
    from django.contrib.auth.models import Permission

    def make(username: str, *, staff: bool = False, permissions=()):
        """``permissions``: "app_label.codename" each."""
        user = django_user_model.objects.create_user(
            username=username, password=f"{username}-pass-9x!", is_staff=staff)
        for name in permissions:
            app_label, codename = name.split(".")
            user.user_permissions.add(Permission.objects.get(
                content_type__app_label=app_label, codename=codename))
        return user

    return make


@pytest.fixture(autouse=True)
def no_broker_outside_live_tests(request, monkeypatch):
    """Tests without the live system never reach a broker or its management API.

    Otherwise they would read (and cache Celery's connection pool for) the
    default vhost, which may be someone's running `make run`.
    """
    if request.node.get_closest_marker("live"):
        return
    from queueworks.ops import selectors, views
    from queueworks.ops.broker import QueueStats

    monkeypatch.setattr(selectors, "_workers_replies", lambda: ({}, ""))
    monkeypatch.setattr(selectors, "dead_letters", lambda **kwargs: ([], "not read in this test"))
    monkeypatch.setattr(views, "queue_stats", lambda names, **options: {
        name: QueueStats(name=name, exists=True, consumers=1) for name in names})


@pytest.fixture
def no_supervisor(tmp_path, monkeypatch):
    """Point the dashboard at a run dir without supervisord (never someone else's)."""
    monkeypatch.setenv("RUN_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="session")
def test_output_dir() -> Path:
    path = Path(os.environ.get("TEST_OUTPUT_DIR", PROJECT_ROOT / "run" / "test-output"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def browser(monkeypatch):
    """Headless Debian Chromium driven by Playwright (no browser download)."""
    # Playwright's sync API keeps an event loop in this thread; the test's own
    # ORM calls are still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make install` (deploy/bin/ensure-system.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                             headless=True)
        try:
            yield browser
        finally:
            browser.close()
