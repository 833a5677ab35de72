"""Hooks for the schemathesis run of ``test_gateway_schemathesis.py`` (``SCHEMATHESIS_HOOKS``).

``GET /api/v1/functions/{name}/logs?follow=true`` streams until the client goes away, and schemathesis
reads every body to its end: a generated query that asks to follow a function it happened to create
would never finish. Such queries are dropped here; ``test_gateway_logs.py`` tests the stream.
"""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.hook
def filter_query(context: Any, query: dict[str, Any] | None) -> bool:
    return not query or str(query.get("follow", "")).lower() != "true"
