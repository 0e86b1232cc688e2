"""GET /metrics: the Prometheus text format, for a scraper or a permitted user."""

from __future__ import annotations

from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from queueworks.metrics.access import scrape_refusal
from queueworks.metrics.exposition import ProjectCollector

REGISTRY = CollectorRegistry()
REGISTRY.register(ProjectCollector())


@never_cache
def metrics(request):
    if request.method not in ("GET", "HEAD"):
        response = JsonResponse({"error": f"method {request.method} not allowed: use GET"}, status=405)
        response["Allow"] = "GET, HEAD"
        return response
    refusal = scrape_refusal(request)
    if refusal is not None:
        return refusal
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
