"""The Dormant gateway: HTTP invoke and control-plane API, async invocations, cron and queue triggers.

``create_app`` and ``GatewayConfig`` load on first use, so ``dormant`` (which only needs the gateway's
command-line flags) starts without importing the HTTP stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .config import GatewayConfig

__all__ = ["GatewayConfig", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app  # lazy: start-up time

        return create_app
    if name == "GatewayConfig":
        from .config import GatewayConfig  # lazy: start-up time

        return GatewayConfig
    raise AttributeError(name)
