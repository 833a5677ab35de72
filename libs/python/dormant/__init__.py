"""Dormant: an MQTT-native function mesh. The SDK that function authors and callers import."""

from typing import TYPE_CHECKING

from .app import FunctionSpec, ServiceSpec
from .context import ANONYMOUS, Context, UserContext
from .decorators import function, service
from .errors import (
    BusinessLogicError,
    Conflict,
    DormantError,
    Forbidden,
    NotFound,
    SystemError,
    TimeoutError,
    Unauthenticated,
    Unavailable,
    ValidationError,
)

if TYPE_CHECKING:  # type checkers see the real class; at run time it loads on first use (below)
    from .client import Client

__all__ = [
    "ANONYMOUS",
    "BusinessLogicError",
    "Client",
    "Conflict",
    "Context",
    "DormantError",
    "Forbidden",
    "FunctionSpec",
    "NotFound",
    "ServiceSpec",
    "SystemError",
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
    raise AttributeError(name)
