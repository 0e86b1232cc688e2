"""Request rates per user and per scope, counted in the shared cache.

Counted in the ``throttles`` cache (files shared by the host's web
processes; see settings).  Scopes: ``reads`` (every GET), ``start`` (start, cancel, re-run), ``bulk``
(bulk start); anonymous requests count per address under ``anon``.  Rates
come from ``TASKAPI_THROTTLE_RATES`` (read on every request, so the
environment and test settings apply without a restart of DRF's settings).
Over the rate: 429 with ``Retry-After``.
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import caches
from rest_framework.throttling import SimpleRateThrottle
from queueworks.conf import settings as queueworks_settings

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class ScopedUserThrottle(SimpleRateThrottle):
    def __init__(self):  # the scope is known per request only
        self.cache = caches["throttles"]

    @staticmethod
    def scope_of(request, view) -> str:
        if not (request.user and request.user.is_authenticated):
            return "anon"
        if request.method in SAFE_METHODS:
            return "reads"
        return getattr(view, "throttle_scope", None) or "start"

    def get_rate(self):
        return queueworks_settings.TASKAPI_THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request, view):
        if request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = f"addr-{self.get_ident(request)}"
        return f"throttle:{self.scope}:{ident}"

    def allow_request(self, request, view):
        self.scope = self.scope_of(request, view)
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)
