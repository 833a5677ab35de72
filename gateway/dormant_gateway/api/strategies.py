"""The seed's rollout requests (``strategy`` ``Canary``, ``Linear``, ``BlueGreen``, ``Rolling``,
``ABTesting`` with their ``config`` keys) as the rollout configuration ``dormant deploy --strategy``
hands the catalog.

The catalog owns what each key means (``dormant_catalog.rollouts.config``); this module reads the
request strictly (``check_settings``: a key the strategy does not read, or a value of the wrong type,
is refused) and turns every ``RolloutSettingError`` into a ``ValidationError`` whose details name the
field, ``config.<key>``.
"""

from __future__ import annotations

from typing import Any

from dormant.errors import ValidationError
from dormant_catalog.rollouts.config import RolloutSettingError, check_settings, strategy_name

ALL_AT_ONCE_NAMES = frozenset({"allatonce", "direct", "all-at-once"})
SEED_NAMES = ("AllAtOnce", "Canary", "Linear", "BlueGreen", "Rolling", "ABTesting")


def field_error(exc: RolloutSettingError) -> ValidationError:
    """The catalog's refusal of a setting, as the API's typed 400 naming ``config.<key>``."""
    where = "strategy" if exc.field == "strategy" else f"config.{exc.field}"
    return ValidationError(str(exc), {"field": where})


def strategy_of(value: Any) -> str:
    """``all-at-once`` or the catalog's name of a rollout strategy (``canary``, ``blue-green``, ...)."""
    if not isinstance(value, str):
        raise ValidationError("strategy must be a string", {"field": "strategy"})
    if value.strip().lower() in ALL_AT_ONCE_NAMES:
        return "all-at-once"
    try:
        return strategy_name(value)
    except RolloutSettingError:
        raise ValidationError(
            f"unknown strategy {value[:40]!r}; use one of {', '.join(SEED_NAMES)}", {"field": "strategy"}
        ) from None


def rollout_config(strategy: str, config: Any) -> dict[str, Any]:
    """The configuration for ``dormant_catalog.rollouts.actions.start``, checked key by key."""
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ValidationError("config must be an object", {"field": "config"})
    inner = config.get("strategy")
    if inner is not None and (not isinstance(inner, str) or strategy_of(inner) != strategy):
        # The seed's pattern configurations carry the strategy too; it must not say another one.
        raise ValidationError(
            f"config.strategy {inner!r} contradicts the request's strategy", {"field": "config.strategy"}
        )
    raw = {**config, "strategy": strategy}
    try:
        check_settings(raw)
    except RolloutSettingError as exc:
        raise field_error(exc) from None
    return raw
