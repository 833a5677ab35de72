"""What every request handler reaches through ``request.app.state.gateway``: one of each long-lived part."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from dormant.client import Client
from dormant_catalog import Database
from dormant_catalog import versions as version_sql
from dormant_catalog.audit_trail import AuditTrail
from dormant_catalog.gateway import functions as function_sql

from .auth import DevKey, PrincipalVerifier
from .auth.identity import GatewayIdentity
from .config import GatewayConfig
from .ratelimit import RateLimiter

FUNCTION_INFO_TTL_S = 1.0


@dataclass(slots=True)
class FunctionInfo:
    exists: bool
    """The catalog has versions of it or the control plane created it."""
    deleted: bool
    timeout_s: float | None
    latest_version: int | None
    """Versions are numbered 1..latest and never removed: version N exists iff N <= latest."""


@dataclass
class GatewayState:
    config: GatewayConfig
    client: Client
    """The broker connection; its route tables decide which version each call goes to."""
    db: Database
    """The one pool to the catalog database (its tables and the gateway's)."""
    verifier: PrincipalVerifier
    limiter: RateLimiter
    dev_key: DevKey | None
    identity: GatewayIdentity | None = None
    """The gateway's own token, for the calls it makes by itself; None: no client configured, those
    calls carry no token."""
    audit: AuditTrail | None = None
    """Where refused tokens (``security``) and refused roles (``authorization``) are recorded."""
    invocations_ready: asyncio.Event = field(default_factory=asyncio.Event)
    triggers_changed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when this replica changed a trigger: wakes the cron scheduler and the queue supervisor."""
    trigger_generation: int = 0
    """Counts trigger changes made through this replica (other replicas' are seen within a second)."""
    _info: dict[str, tuple[float, FunctionInfo]] = field(default_factory=dict)

    async def function_info(self, service: str, *, fresh: bool = False) -> FunctionInfo:
        """Whether ``service`` exists or is soft-deleted, its newest version and configured timeout.

        Cached for a second; ``fresh`` reads the catalog (callers do before answering NotFound).
        """
        now = time.monotonic()
        hit = self._info.get(service)
        if not fresh and hit is not None and now - hit[0] < FUNCTION_INFO_TTL_S:
            return hit[1]
        record = await self.db.run(function_sql.get_function, service, include_deleted=True)
        info = FunctionInfo(
            exists=record is not None,
            deleted=record is not None and record.deleted_at is not None,
            timeout_s=float(record.timeout_s) if record is not None else None,
            latest_version=await self.db.run(version_sql.latest_version, service)
            if record is not None
            else None,
        )
        self._info[service] = (now, info)
        return info

    async def own_authorization(self) -> str | None:
        """The ``authorization`` of a call the gateway makes on its own: its own bearer token, or None
        without an identity; ``Unavailable`` while no token can be had."""
        return None if self.identity is None else await self.identity.authorization()

    def bump_triggers(self) -> None:
        self.trigger_generation += 1
        self.triggers_changed.set()

    def forget_function(self, service: str) -> None:
        self._info.pop(service, None)
