"""The alias rules every writer of the ``aliases`` table goes through (``dormant_catalog.aliases``)."""

from __future__ import annotations

from typing import Any

import pytest

from dormant_catalog import InvalidCatalogRequest
from dormant_catalog import aliases as alias_sql
from dormant_catalog.names import check_alias
from dormant_catalog.rollouts import store as rollout_store


def test_weights_are_whole_numbers_from_0_to_100_adding_up_to_100() -> None:
    assert alias_sql.check_weights({2: 10, 1: 90}) == {1: 90, 2: 10}
    assert list(alias_sql.check_weights({3: 0, 1: 100})) == [1, 3]  # in version order
    assert alias_sql.check_weights({7: 100}) == {7: 100}


@pytest.mark.parametrize(
    ("weights", "says"),
    [
        ({}, "at least one version"),
        ({1: 90, 2: 5}, "add up to 100, not 95"),
        ({1: 60, 2: 50}, "add up to 100, not 110"),
        ({1: 1, 2: 1}, "add up to 100, not 2"),  # the rollout path accepted any positive sum
        ({1: 110, 2: -10}, "from 0 to 100"),
        ({1: -1, 2: 101}, "from 0 to 100"),
        ({1: 50.0, 2: 50}, "whole number"),
        ({1: True, 2: 99}, "whole number"),
        ({1: "50", 2: 50}, "whole number"),
        ({0: 100}, "numbered from 1"),
        ({"1": 100}, "numbered from 1"),
    ],
)
def test_bad_weights_are_refused_with_the_reason(weights: dict[Any, Any], says: str) -> None:
    with pytest.raises(InvalidCatalogRequest, match=says):
        alias_sql.check_weights(weights)


@pytest.mark.parametrize("name", ["", "Live", "$LATEST", "1st", "a b", "a" * 65, "-x"])
def test_alias_names_follow_the_service_name_rules(name: str) -> None:
    with pytest.raises(InvalidCatalogRequest):
        check_alias(name)
    assert check_alias(alias_sql.LIVE_ALIAS) == "live"


def test_the_rollout_names_are_the_one_writer_and_reader() -> None:
    # The controller calls these names; they must not grow a second copy of the alias SQL.
    assert rollout_store.set_weights is alias_sql.set_alias
    assert rollout_store.aliases is alias_sql.list_aliases
    assert rollout_store.route_apps is alias_sql.aliased_apps
