"""Whether a value survives JSON: what may be stored with a call that is
published again later (a long delay, a parked call under a limit)."""

from __future__ import annotations

import json


def json_safe(value) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False
