from django.http import JsonResponse


def health(request):
    """Liveness of the web process only; deeper checks live in the ops tools."""
    return JsonResponse({"status": "ok"})
