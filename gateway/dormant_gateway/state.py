"""What every request handler reaches through ``request.app.state.gateway``: one of each long-lived part."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from dormant.client import Client
from dormant_catalog import Catalog
from dormant_catalog.gateway import GatewayStore

from .auth import DevKey, TokenVerifier
from .config import GatewayConfig
from .ratelimit import RateLimiter
from .routing import RouteTable

FUNCTION_INFO_TTL_S = 1.0


@dataclass(slots=True)
class FunctionInfo:
    deleted: bool
    timeout_s: float | None


@dataclass
class GatewayState:
    config: GatewayConfig
    client: Client
    catalog: Catalog
    store: GatewayStore
    verifier: TokenVerifier
    limiter: RateLimiter
    routes: RouteTable
    dev_key: DevKey | None
    invocations_ready: asyncio.Event = field(default_factory=asyncio.Event)
    triggers_changed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when this replica changed a trigger: wakes the cron scheduler and the queue supervisor."""
    trigger_generation: int = 0
    """Counts trigger changes made through this replica (other replicas' are seen within a second)."""
    _info: dict[str, tuple[float, FunctionInfo]] = field(default_factory=dict)

    async def function_info(self, service: str) -> FunctionInfo:
        """Whether ``service`` is soft-deleted and its configured timeout, cached for a second."""
        now = time.monotonic()
        hit = self._info.get(service)
        if hit is not None and now - hit[0] < FUNCTION_INFO_TTL_S:
            return hit[1]
        record = await self.store.get_function(service, include_deleted=True)
        info = FunctionInfo(
            deleted=record is not None and record.deleted_at is not None,
            timeout_s=float(record.timeout_s) if record is not None else None,
        )
        self._info[service] = (now, info)
        return info

    def bump_triggers(self) -> None:
        self.trigger_generation += 1
        self.triggers_changed.set()

    def forget_function(self, service: str) -> None:
        self._info.pop(service, None)
