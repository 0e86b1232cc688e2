"""Django task priorities (-100..100, 0 the default) onto a queue's AMQP
priorities (0..max_priority, higher first).

0 is the project's default AMQP priority (CELERY_TASK_DEFAULT_PRIORITY, 5 of
0-9), so an unprioritised Django task and a plain Celery task are equals.
Positive priorities spread evenly over the levels above it, negative ones
over the levels below: with 0-9 and default 5, 1..25 -> 6, 26..50 -> 7,
51..75 -> 8, 76..100 -> 9; -1..-20 -> 4, ... -81..-100 -> 0.  Any positive
priority runs before every default one, any negative one after.
"""

from __future__ import annotations

import math


def amqp_priority(priority: int, *, max_priority: int, default: int) -> int:
    """The AMQP priority for a Django priority on a queue with ``max_priority``."""
    default = min(max(default, 0), max_priority)
    if priority > 0:
        levels = max_priority - default
        return default + math.ceil(priority * levels / 100) if levels else default
    if priority < 0:
        return default - math.ceil(-priority * default / 100)
    return default
