"""The LISTEN/NOTIFY channels the catalog signals changes on (the payload is the application name).

``dormant_routes``: aliases, versions or states changed; the controller republishes the route table and
service state. ``dormant_slots``: replica slots (or the ``live`` primary) changed; pods re-read their
work, and the controller its tables.
"""

from __future__ import annotations

from .db import Conn

ROUTES_CHANNEL = "dormant_routes"
SLOTS_CHANNEL = "dormant_slots"


async def notify(conn: Conn, channel: str, app_name: str) -> None:
    """NOTIFY ``channel`` with ``app_name`` (delivered when the caller's transaction commits)."""
    await conn.execute("SELECT pg_notify(%s, %s)", (channel, app_name))
