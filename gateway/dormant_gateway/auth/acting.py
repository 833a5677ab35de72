"""For whom the gateway makes a call on its own: headers that name a person without vouching for them.

A call the gateway makes by itself (a cron tick, a queue message, an async invocation, an HTTP trigger)
is authenticated by its token: the gateway's own (``identity.py``), or the HTTP caller's for a ``jwt``
trigger. These headers only say whose trigger fired (``x-dormant-trigger-owner``: the subject that
created it) or who asked for an async invocation (``x-dormant-on-behalf-of``: the subject whose token
the gateway verified when it accepted the request), so a function can log or attribute the work. They
carry no authority: no runtime verifies them, and nothing may be granted on them. The gateway sets them
itself, over any value stored with an invocation; callers of the invoke API cannot send them (it
forwards only CloudEvents and trace headers).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TRIGGER_OWNER = "x-dormant-trigger-owner"
ON_BEHALF_OF = "x-dormant-on-behalf-of"
_SET_BY_THE_GATEWAY = frozenset({"authorization", TRIGGER_OWNER, ON_BEHALF_OF})


def trigger_headers(owner: str) -> dict[str, str]:
    """Headers of a call a trigger makes (cron, queue, HTTP)."""
    return {TRIGGER_OWNER: owner}


def invocation_headers(
    stored: Mapping[str, Any], *, created_by: str, trigger_id: str | None
) -> dict[str, str]:
    """The headers of a persisted invocation's call: those stored with it (never a token), and who it is
    for: the trigger's owner for a cron tick, else the subject that asked for it."""
    headers = {
        name: value
        for name, value in stored.items()
        if isinstance(value, str) and name.lower() not in _SET_BY_THE_GATEWAY
    }
    headers[TRIGGER_OWNER if trigger_id is not None else ON_BEHALF_OF] = created_by
    return headers
