"""The gateway's tables: function settings, triggers and their metrics, async invocations.

``GatewayStore`` is the facade; every SQL statement of the gateway lives in this subpackage.
"""

from .records import FunctionRecord, InvocationRecord, TriggerMetrics, TriggerRecord
from .store import GatewayStore, open_gateway_store

__all__ = [
    "FunctionRecord",
    "GatewayStore",
    "InvocationRecord",
    "TriggerMetrics",
    "TriggerRecord",
    "open_gateway_store",
]
