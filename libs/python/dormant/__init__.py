"""Dormant: an MQTT-native function mesh. The SDK that function authors and callers import."""

from typing import TYPE_CHECKING

from .app import FunctionSpec, ServiceSpec
from .authorizer import Authorizer
from .context import ANONYMOUS, Context, UserContext
from .datastore import DataStore, QueryResult
from .decorators import function, service
from .errors import (
    BusinessLogicError,
    Conflict,
    DormantError,
    Forbidden,
    NotFound,
    SystemError,
    Throttled,
    TimeoutError,
    Unauthenticated,
    Unavailable,
    ValidationError,
)

if TYPE_CHECKING:  # type checkers see the real classes; at run time they load on first use (below)
    from .client import Client
    from .messaging import Messaging

__all__ = [
    "ANONYMOUS",
    "Authorizer",
    "BusinessLogicError",
    "Client",
    "Conflict",
    "Context",
    "DataStore",
    "DormantError",
    "Forbidden",
    "FunctionSpec",
    "Messaging",
    "NotFound",
    "QueryResult",
    "ServiceSpec",
    "SystemError",
    "Throttled",
    "TimeoutError",
    "Unauthenticated",
    "Unavailable",
    "UserContext",
    "ValidationError",
    "function",
    "service",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # The client pulls in the MQTT stack; handler code that never calls out does not pay for it.
    if name == "Client":
        from .client import Client  # lazy: start-up time

        return Client
    if name == "Messaging":
        from .messaging import Messaging  # lazy: start-up time (it needs the client)

        return Messaging
    raise AttributeError(name)
