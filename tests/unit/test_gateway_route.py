"""``dormant_gateway.targets.route``: the gateway decides a call's version once, with its SDK client's
pick from the published route table; the catalog is read only to say why an alias has no route."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any, cast

import pytest

from dormant.errors import NotFound, Unavailable, ValidationError
from dormant.routing import RouteTable
from dormant_catalog import aliases as alias_sql
from dormant_catalog import versions as version_sql
from dormant_gateway.state import GatewayState
from dormant_gateway.targets import route


class FakeClient:
    """The parts of ``dormant.Client`` that ``route`` uses, with a route table fed by hand."""

    def __init__(self, table: bytes | None) -> None:
        self.routes = RouteTable()
        self.loaded: list[str] = []
        if table is not None:
            self.routes.feed("mesh/routes/svc", table)

    async def route(self, service: str, *, alias: str = "live", routing_key: str | None = None) -> int | None:
        self.loaded.append(service)
        return self.routes.choose(service, routing_key, alias)


class FakeDb:
    def __init__(self, answers: dict[Any, Any] | None = None) -> None:
        self.answers = answers or {}
        self.asked: list[str] = []

    async def run(self, query: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        self.asked.append(query.__name__)
        return self.answers[query]


def gateway(table: bytes | None, answers: dict[Any, Any] | None = None) -> Any:
    return SimpleNamespace(client=FakeClient(table), db=FakeDb(answers))


async def test_the_route_is_the_sdk_clients_pick_and_the_catalog_is_not_read() -> None:
    gw = gateway(b'{"live": {"2": 100}, "beta": {"3": 100}, "$LATEST": {"4": 100}}')
    state = cast(GatewayState, gw)
    assert await route(state, "svc", alias=None, version=None) == 2
    assert await route(state, "svc", alias="live", version=None) == 2
    assert await route(state, "svc", alias="beta", version=None) == 3
    assert await route(state, "svc", alias="$LATEST", version=None) == 4
    assert gw.client.loaded == ["svc"] * 4 and gw.db.asked == []


async def test_an_explicit_version_is_not_picked_and_excludes_an_alias() -> None:
    gw = gateway(b'{"live": {"2": 100}}')
    assert await route(cast(GatewayState, gw), "svc", alias=None, version=7) == 7
    with pytest.raises(ValidationError):
        await route(cast(GatewayState, gw), "svc", alias="beta", version=7)
    assert gw.client.loaded == []


async def test_no_live_table_means_the_live_topic() -> None:
    gw = gateway(None)
    assert await route(cast(GatewayState, gw), "svc", alias=None, version=None) is None
    assert gw.db.asked == []


async def test_an_alias_missing_from_the_table_is_explained_from_the_catalog() -> None:
    unknown = gateway(b'{"live": {"1": 100}}', {alias_sql.get_alias: None})
    with pytest.raises(NotFound, match="no alias 'beta'"):
        await route(cast(GatewayState, unknown), "svc", alias="beta", version=None)
    unserved = gateway(b'{"live": {"1": 100}}', {alias_sql.get_alias: object()})
    with pytest.raises(Unavailable, match="routes to no version that is serving"):
        await route(cast(GatewayState, unserved), "svc", alias="beta", version=None)
    empty = gateway(None, {version_sql.latest_version: None})
    with pytest.raises(NotFound, match="no version"):
        await route(cast(GatewayState, empty), "svc", alias="$LATEST", version=None)
    starting = gateway(None, {version_sql.latest_version: 3})
    with pytest.raises(Unavailable, match="v3"):
        await route(cast(GatewayState, starting), "svc", alias="$LATEST", version=None)
