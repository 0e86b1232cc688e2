"""The client's address behind a reverse proxy: X-Forwarded-For counts only
when the peer is a trusted proxy (QUEUEWORKS_TRUSTED_PROXIES), for the login
lockout (django-axes) and the audit log alike."""

import pytest
from django.test import Client

from queueworks.ops.models import AuditEntry
from queueworks.ops import views

pytestmark = pytest.mark.django_db

PROXY = "127.0.0.1"          # nginx on the web host, as deploy/nginx/ ships it
ATTACKER = "198.51.100.7"
USER_ADDRESS = "203.0.113.20"
PASSWORD = "ann-pass-9x!"    # make_user's password for "ann"


def _login(client, *, password, forwarded_for=None):
    extra = {"HTTP_X_FORWARDED_FOR": forwarded_for} if forwarded_for else {}
    return client.post("/accounts/login/", {"username": "ann", "password": password}, **extra)


@pytest.fixture
def behind_proxy(settings):
    settings.QUEUEWORKS_TRUSTED_PROXIES = [PROXY, "::1"]
    settings.AXES_FAILURE_LIMIT = 3


def test_failures_from_one_address_do_not_lock_out_the_user_at_another(make_user, behind_proxy):
    make_user("ann")
    via_proxy = Client(REMOTE_ADDR=PROXY)
    statuses = [_login(via_proxy, password="wrong", forwarded_for=ATTACKER).status_code
                for _ in range(3)]
    assert statuses == [200, 200, 429]  # the attacker is locked out
    assert _login(via_proxy, password=PASSWORD, forwarded_for=ATTACKER).status_code == 429
    # The user, through the same proxy from their own address, is not.
    assert _login(Client(REMOTE_ADDR=PROXY), password=PASSWORD,
                  forwarded_for=USER_ADDRESS).status_code == 302


def test_a_forged_header_from_an_untrusted_peer_is_ignored(make_user, behind_proxy):
    make_user("ann")
    peer = Client(REMOTE_ADDR=ATTACKER)
    # A new forged address on every attempt: still counted against the peer's own.
    statuses = [_login(peer, password="wrong", forwarded_for=f"192.0.2.{n}").status_code
                for n in range(3)]
    assert statuses == [200, 200, 429]
    assert _login(peer, password=PASSWORD, forwarded_for="192.0.2.99").status_code == 429


def test_the_last_untrusted_hop_is_the_client(rf, settings):
    from queueworks.core.client_address import client_address

    settings.QUEUEWORKS_TRUSTED_PROXIES = ["10.0.0.0/8", PROXY]
    # A client-supplied entry first, then what two trusted proxies appended.
    request = rf.get("/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="6.6.6.6, 5.6.7.8, 10.1.2.3")
    assert client_address(request) == "5.6.7.8"
    assert client_address(rf.get("/", REMOTE_ADDR="5.5.5.5",
                                 HTTP_X_FORWARDED_FOR="6.6.6.6")) == "5.5.5.5"
    # Only trusted proxies in the chain: the first hop is as close as it gets.
    assert client_address(rf.get("/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="10.9.9.9")) \
        == "10.9.9.9"
    # Garbage in the header is not an address: the peer's own is kept.
    assert client_address(rf.get("/", REMOTE_ADDR=PROXY,
                                 HTTP_X_FORWARDED_FOR="not-an-ip")) == PROXY
    settings.QUEUEWORKS_TRUSTED_PROXIES = []
    assert client_address(request) == PROXY


@pytest.fixture
def controller(make_user, monkeypatch):
    monkeypatch.setattr(views, "program_control", lambda *, name, action: f"{name}: {action}")
    return make_user("controller", permissions=("ops.control_programs",))


def test_the_audit_log_records_the_address_by_the_same_rule(controller, behind_proxy):
    via_proxy = Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=USER_ADDRESS)
    via_proxy.force_login(controller)
    assert via_proxy.post("/ops/programs/beat/start/").status_code == 302
    forged = Client(REMOTE_ADDR=ATTACKER, HTTP_X_FORWARDED_FOR="192.0.2.1")
    forged.force_login(controller)
    assert forged.post("/ops/programs/beat/start/").status_code == 302
    assert list(AuditEntry.objects.order_by("pk").values_list("address", flat=True)) == \
        [USER_ADDRESS, ATTACKER]
