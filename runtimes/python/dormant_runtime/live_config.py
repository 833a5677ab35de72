"""A service's live configuration as a runtime receives it: ``mesh/config/{svc}`` (retained, published by
the controller from the catalog's ``function_config``), ``{"revision": N, "values": {...}}``.

The runtime subscribes to its service's topic and then the controller's marker ``mesh/config`` (one
SUBSCRIBE) before its request topics, and waits until one of them arrives: the broker sends retained
messages in the order of the filters, so the marker arriving first means no revision is retained for the
service (none set). With neither (no controller ever published on this broker) it waits
``FIRST_REVISION_WAIT_S``, once. Later revisions replace ``Dispatcher.config`` whole between calls.
Messages on one connection arrive in the order the broker took them, so a call published after the
controller's revision was acknowledged sees that revision. A payload that is not a configuration is
ignored (the previous one stays) with a warning; an empty payload (the service is gone) leaves it too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import orjson

log = logging.getLogger("dormant.runtime")

FIRST_REVISION_WAIT_S = 1.0
"""How long a starting runtime waits for its service's retained configuration or the controller's
marker before it serves without one (no controller published on this broker: an empty ``ctx.config``)."""


@dataclass(frozen=True, slots=True)
class ConfigRevision:
    revision: int
    values: Mapping[str, Any]


def parse_revision(payload: bytes) -> ConfigRevision | None:
    """The revision a ``mesh/config/{svc}`` payload holds; None for an empty or malformed one."""
    if not payload:
        return None
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        log.warning("ignored a live configuration that is not JSON")
        return None
    revision = body.get("revision") if isinstance(body, dict) else None
    values = body.get("values") if isinstance(body, dict) else None
    if not isinstance(revision, int) or isinstance(revision, bool) or not isinstance(values, dict):
        log.warning("ignored a live configuration without an integer revision and a values object")
        return None
    return ConfigRevision(revision, MappingProxyType(values))
