"""Every test of Django's task backend carries the ``tasks_backend`` marker:
the Django 6 pass (``make test-django6``) selects them with it, live ones
included, beside the tests that need no broker."""

from pathlib import Path

import pytest

# The Task API's HTTP helpers: a Django task started over /api/v1/.
from tests.queueworks.taskapi.conftest import live_http  # noqa: F401

HERE = Path(__file__).resolve().parent


# Before pytest's own hook deselects by marker (-m).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.tasks_backend)
