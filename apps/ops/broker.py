"""Queue statistics for the dashboard: names kept for its callers.

The broker is read in one place, ``apps/core/broker_state.py``.
"""

from __future__ import annotations

from apps.core.broker_state import BrokerStateError as BrokerStatsError
from apps.core.broker_state import ManagementApi, management_api
from apps.core.broker_state import QueueState as QueueStats
from apps.core.broker_state import queue_states as queue_stats

__all__ = ["BrokerStatsError", "ManagementApi", "QueueStats", "management_api", "queue_stats"]
