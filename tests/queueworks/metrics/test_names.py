"""Metric names carry the project's name (QUEUEWORKS_PROJECT_NAME), as the
setting documents: an adopting project's metrics are its own."""

import importlib

from django.test import override_settings

from queueworks.metrics import names


def _reloaded():
    return importlib.reload(names)


def test_the_example_projects_metrics_are_prefixed_with_its_name():
    assert names.PREFIX == "projectname"
    assert names.TASKS == "projectname_tasks"


def test_an_adopting_projects_metrics_carry_its_own_name():
    try:
        with override_settings(QUEUEWORKS_PROJECT_NAME="shop"):
            reloaded = _reloaded()
            assert reloaded.PREFIX == "shop"
            assert reloaded.TASKS == "shop_tasks"
            assert reloaded.LIMIT_WAITING == "shop_limit_waiting"
    finally:
        _reloaded()
    assert names.TASKS == "projectname_tasks"
