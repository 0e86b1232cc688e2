"""`celery inspect conf` (and Flower's worker Config tab, which asks the same)
never returns the broker URL's password or Flower's credentials."""

import json
from types import SimpleNamespace

import pytest
from celery.worker.control import Panel

from projectname.celery import app


def test_the_workers_conf_reply_masks_url_passwords():
    from urllib.parse import urlsplit

    from django.conf import settings

    password = urlsplit(settings.CELERY_BROKER_URL).password
    assert password  # the project's user has one (.env)
    reply = Panel.data["conf"](SimpleNamespace(app=app))
    assert "CELERY_BROKER_URL" in reply
    assert password not in json.dumps(reply)


@pytest.mark.live
def test_a_live_workers_conf_has_no_broker_password(live_system):
    from urllib.parse import urlsplit

    password = urlsplit(live_system.broker_url).password
    node = live_system.node("main_worker")
    replies = app.control.inspect(destination=[node], timeout=5).conf() or {}
    assert node in replies
    assert password not in json.dumps(replies)


def test_the_old_alias_answers_the_same_masked_reply():
    assert Panel.data["dump_conf"] is Panel.data["conf"]
