"""Queue statistics for the dashboard: names kept for its callers.

The broker is read in one place, ``queueworks/core/broker_state.py``.
"""

from __future__ import annotations

from queueworks.core.broker_state import BrokerStateError as BrokerStatsError
from queueworks.core.broker_state import ManagementApi, management_api
from queueworks.core.broker_state import QueueState as QueueStats
from queueworks.core.broker_state import queue_states as queue_stats

__all__ = ["BrokerStatsError", "ManagementApi", "QueueStats", "management_api", "queue_stats"]
