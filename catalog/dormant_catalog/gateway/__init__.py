"""The gateway's tables: function settings, triggers and their metrics, async invocations.

Every SQL statement of the gateway lives in this subpackage, as functions of a connection
(``functions``, ``triggers``, ``invocations``); the gateway runs them with ``Database.run``.
"""

from .records import FunctionRecord, InvocationRecord, TriggerMetrics, TriggerRecord

__all__ = ["FunctionRecord", "InvocationRecord", "TriggerMetrics", "TriggerRecord"]
