"""Who may scrape /metrics.

Either a signed-in user holding ``metrics.view_metrics`` (staff status grants
nothing, as everywhere in the project), or a scraper sending HTTP basic
credentials equal to ``METRICS_USERNAME``/``METRICS_PASSWORD`` from the
environment.  With no credentials configured basic authentication is refused:
there is no default password.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from django.conf import settings
from django.http import JsonResponse
from queueworks.conf import settings as queueworks_settings

VIEW_METRICS = "metrics.view_metrics"
REALM = 'Basic realm="metrics", charset="UTF-8"'


def _basic_credentials(request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username, _, password = base64.b64decode(encoded.strip(), validate=True) \
            .decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return ("", "")
    return username, password


def _unauthorized(message: str) -> JsonResponse:
    response = JsonResponse({"error": message}, status=401)
    response["WWW-Authenticate"] = REALM
    return response


def scrape_refusal(request) -> JsonResponse | None:
    """None when the request may scrape; otherwise the JSON refusal to send."""
    credentials = _basic_credentials(request)
    if credentials is not None:
        username, password = queueworks_settings.METRICS_USERNAME, queueworks_settings.METRICS_PASSWORD
        if not (username and password):
            return _unauthorized("basic authentication for /metrics is not configured "
                                 "(METRICS_USERNAME, METRICS_PASSWORD)")
        # Both compared, always, in constant time: no timing hint which one was wrong.
        same_user = hmac.compare_digest(credentials[0].encode(), username.encode())
        same_password = hmac.compare_digest(credentials[1].encode(), password.encode())
        if same_user and same_password:
            return None
        return _unauthorized("wrong metrics credentials")
    user = request.user
    if not user.is_authenticated:
        return _unauthorized("authentication required: basic credentials or a signed-in user "
                             f"with {VIEW_METRICS}")
    if not user.has_perm(VIEW_METRICS):
        return JsonResponse({"error": f"permission {VIEW_METRICS} required"}, status=403)
    return None
