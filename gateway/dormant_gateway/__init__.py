"""The Dormant gateway: HTTP invoke and control-plane API, async invocations, cron and queue triggers."""

from .app import create_app
from .config import GatewayConfig

__all__ = ["GatewayConfig", "create_app"]
