"""The SDK's route table: parsing retained tables, weighted and sticky picks (pure logic)."""

from __future__ import annotations

import collections
import random

from dormant.routing import RouteTable, parse_routes, pick


def test_a_route_table_is_fed_replaced_and_deleted() -> None:
    table = RouteTable()
    assert not table.feed("reply/x", b"{}")
    assert table.feed("mesh/routes/svc", b'{"live": {"1": 90, "2": 10}, "$LATEST": {"2": 100}}')
    assert table.weights("svc") == {1: 90, 2: 10} and table.weights("svc", "$LATEST") == {2: 100}
    table.feed("mesh/routes/svc", b"")
    assert table.choose("svc") is None
    assert parse_routes(b"not json") is None
    assert parse_routes(b'{"live": {"1": 0, "x": 5}}') == {}


def test_weighted_picks_follow_the_weights_and_keys_stick() -> None:
    rng = random.Random(7)
    seen = collections.Counter(pick({1: 80, 2: 20}, rng=rng) for _ in range(10_000))
    assert 7_600 < seen[1] < 8_400
    assert {pick({1: 50, 2: 50}, "user-1") for _ in range(50)} == {pick({1: 50, 2: 50}, "user-1")}
    keys = collections.Counter(pick({1: 50, 2: 50}, f"user-{i}") for i in range(2000))
    assert 900 < keys[1] < 1100
    assert pick({3: 100}, "anyone") == 3
