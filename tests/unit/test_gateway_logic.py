"""Pure logic of the gateway: rate limits, schedules, validation, paths, input, roles (weighted picks are
the SDK's: ``tests/unit/test_routing.py``)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dormant.errors import ValidationError
from dormant_gateway.auth.roles import Action, Role, allowed, parse_roles
from dormant_gateway.http_errors import HttpError
from dormant_gateway.inputs import check_json_text, parse_decimal, parse_uint, version_number
from dormant_gateway.invoke_input import derive_call_id, parse_invoke_input, split_target
from dormant_gateway.ratelimit import RateLimiter
from dormant_gateway.triggers.paths import PathPattern, best_match
from dormant_gateway.triggers.schedule import ScheduleError, parse_schedule
from dormant_gateway.triggers.settings import validate_trigger
from dormant_gateway.validation import validate_create, validate_environment


def test_rate_limiter_refills_over_time_and_says_when_to_retry() -> None:
    now = [0.0]
    limiter = RateLimiter({"manage": 2}, clock=lambda: now[0])
    limiter.check("manage", "ann")
    limiter.check("manage", "ann")
    with pytest.raises(HttpError) as caught:
        limiter.check("manage", "ann")
    assert caught.value.status == 429 and caught.value.headers["Retry-After"] == "30"
    limiter.check("manage", "bob")
    now[0] = 30.0
    limiter.check("manage", "ann")


def test_schedules_cron_with_seconds_rate_and_time_zones() -> None:
    start = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    every_5_min = parse_schedule("0 */5 * * * *")
    assert every_5_min.next_after(start) == datetime(2025, 1, 1, 12, 5, tzinfo=UTC)
    assert parse_schedule("rate(5 minutes)").next_after(start) == datetime(2025, 1, 1, 12, 5, tzinfo=UTC)
    berlin = parse_schedule("0 9 * * *", "Europe/Berlin")
    assert berlin.next_after(start) == datetime(2025, 1, 2, 8, 0, tzinfo=UTC)
    assert len(parse_schedule("* * * * * *").ticks_between(start, start.replace(second=10))) == 10
    for bad in ("every day", "* * *", "rate(0 minutes)"):
        with pytest.raises(ScheduleError):
            parse_schedule(bad)
    with pytest.raises(ScheduleError):
        parse_schedule("* * * * *", "Nowhere/Town")


def test_function_rules_of_the_seed() -> None:
    base = {"name": "fn", "runtime": "python3.11", "handler": "a.b"}
    assert validate_create(base)["memory_mb"] == 256
    for memory in (64, 130, 10304):
        with pytest.raises(ValidationError):
            validate_create({**base, "memorySize": memory})
    assert validate_create({**base, "memorySize": 10240, "timeout": 900})["timeout_s"] == 900
    with pytest.raises(ValidationError):
        validate_environment({"variables": {"K": "v" * 4096}})
    assert validate_environment({"variables": {"K": "v" * 4000}}) == {"K": "v" * 4000}


def test_path_patterns_prefer_literals_and_proxy_takes_the_rest() -> None:
    patterns = [PathPattern.parse("/api/{proxy+}"), PathPattern.parse("/api/users/{id}")]
    assert best_match(patterns, "/api/users/7") == (patterns[1], {"id": "7"})
    assert best_match(patterns, "/api/a/b/c") == (patterns[0], {"proxy": "a/b/c"})
    assert best_match(patterns, "/api") is None


def test_invoke_input_forms() -> None:
    assert split_target("user-service.createUser") == ("user-service", "createUser")
    for bad in ("nodot", "Bad.x", "svc.v2", "svc.1x"):
        with pytest.raises(ValidationError):
            split_target(bad)
    seed = parse_invoke_input("application/json", {}, b'{"payload": "{\\"a\\": 1}", "alias": "beta"}')
    assert seed.seed_form and seed.params == {"a": 1} and seed.alias == "beta"
    plain = parse_invoke_input("application/json", {}, b'{"payload": 1, "other": 2}')
    assert not plain.seed_form and plain.params == {"payload": 1, "other": 2}
    ce_headers = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t"}
    binary = parse_invoke_input("application/json", ce_headers, b'{"x": 1}')
    assert binary.params == {"x": 1} and binary.headers["ce-id"] == "1" and binary.event_key
    structured = parse_invoke_input(
        "application/cloudevents+json",
        {},
        b'{"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data": {"x": 2}}',
    )
    assert structured.params == {"x": 2}
    assert derive_call_id("ann", "s.f", "k") != derive_call_id("bob", "s.f", "k")


def test_trigger_settings() -> None:
    kind, target, config, enabled = validate_trigger(
        {"type": "queue", "function": "count", "config": {"queue": "orders"}}
    )
    assert (kind, target, enabled) == ("queue", "count", True)
    assert config["deadLetterQueue"] == "orders.dlq" and config["batchSize"] == 10
    with pytest.raises(ValidationError):
        validate_trigger({"type": "http", "function": "f", "config": {"path": "/a/{proxy+}/b"}})


def test_roles() -> None:
    assert parse_roles(["Developer", "nobody"]) == frozenset({Role.DEVELOPER})
    assert parse_roles("admin viewer") == frozenset({Role.ADMIN, Role.VIEWER})
    assert allowed({Role.OPERATOR}, Action.DEPLOY_PROD) and not allowed({Role.DEVELOPER}, Action.DEPLOY_PROD)
    assert not allowed({Role.VIEWER}, Action.INVOKE)


# ---- issue 9, items 11 and 12: bounded schedules, strict numbers, NUL, dot segments ----------------

BAD_SCHEDULES = [
    "rate(99999999999999999999 days)",
    "rate(367 days)",
    "rate(0 seconds)",
    "rate(٣ minutes)",
    "rate(\uff13 minutes)",
    "rate(-1 minutes)",
    "* * * * * * *",
    "* * * *\n *",
    "0 0 30 2 *",  # 30 February: no tick ever
    "x" * 1000,
]


@pytest.mark.parametrize("expression", BAD_SCHEDULES)
def test_schedules_are_bounded_at_validation(expression: str) -> None:
    with pytest.raises(ScheduleError):
        parse_schedule(expression)
    with pytest.raises(ValidationError):
        validate_trigger({"type": "cron", "function": "f", "config": {"schedule": expression}})


@pytest.mark.parametrize(
    "timezone",
    ["x" * 1000, "Europe/" + "a" * 60, "../../etc/passwd", "UTC\x00", "Europe/Berlin\n", "", 7, None],
)
def test_time_zones_are_bounded_names(timezone: object) -> None:
    with pytest.raises(ScheduleError):
        parse_schedule("* * * * *", timezone)
    with pytest.raises(ValidationError):
        validate_trigger(
            {"type": "cron", "function": "f", "config": {"schedule": "* * * * *", "timezone": timezone}}
        )


def test_the_longest_rate_computes_ticks() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    yearly = parse_schedule("rate(366 days)")
    assert yearly.next_after(start) > start
    assert parse_schedule("rate(1 second)").ticks_between(start, start.replace(second=3)) != []
    assert parse_schedule("0 9 * * *", "America/Argentina/Buenos_Aires").next_after(start) > start


@given(st.text(max_size=300), st.one_of(st.text(max_size=80), st.none(), st.integers()))
@settings(max_examples=300, deadline=None)
def test_any_schedule_input_is_accepted_and_computable_or_refused_with_schedule_error(
    expression: str, timezone: object
) -> None:
    try:
        schedule = parse_schedule(expression, timezone)
    except ScheduleError:
        return
    start = datetime(2025, 1, 1, tzinfo=UTC)
    assert schedule.next_after(start) > start


@pytest.mark.parametrize("path", ["/a/../b", "/..", "/a/./b", "/a/%2e%2e/b"])
def test_http_trigger_paths_refuse_dot_segments(path: str) -> None:
    with pytest.raises(ValidationError):
        validate_trigger({"type": "http", "function": "f", "config": {"path": path}})


@pytest.mark.parametrize(
    "value", ["٣", "\uff13", "v٣", " 3", "+3", "3_0", "3\n", "0", "2147483648", "", "1e3", True, 2.0]
)
def test_versions_take_ascii_digits_only(value: object) -> None:
    with pytest.raises(ValidationError):
        version_number(value)
    with pytest.raises(ValidationError):
        parse_invoke_input("application/json", {}, orjson.dumps({"payload": {}, "version": value}))


def test_versions_in_ascii_digits_parse() -> None:
    assert version_number("v12") == version_number("12") == version_number(12) == 12
    assert parse_uint("100", "n", low=1, high=100) == 100
    for bad in ("٣", "\uff11", "-1", "101", " 1"):
        with pytest.raises(ValidationError):
            parse_uint(bad, "n", low=1, high=100)
    assert parse_decimal("2.5", "t") == 2.5
    for bad in ("nan", "inf", "1e3", "٣", "-1", ""):
        with pytest.raises(ValidationError):
            parse_decimal(bad, "t")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": "\\u0000"}',
        b'{"\\u0000": 1}',
        b'["x\\\\\\u0000"]',  # an escaped backslash, then an escaped NUL
        b'{"payload": "{\\"a\\": \\"\\\\u0000\\"}"}',  # the seed form: NUL inside the payload string
    ],
)
def test_json_with_nul_is_refused(raw: bytes) -> None:
    with pytest.raises(ValidationError, match="NUL"):
        parse_invoke_input("application/json", {}, raw)


def test_json_with_an_escaped_backslash_before_u0000_is_text_not_nul() -> None:
    value = parse_invoke_input("application/json", {}, b'{"a": "\\\\u0000"}')
    assert value.params == {"a": "\\u0000"}
    check_json_text(b'{"a": "\\\\\\\\u0000"}')


@given(
    st.recursive(st.text(), lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=8)
)
@settings(max_examples=300, deadline=None)
def test_nul_detection_matches_the_decoded_value(value: object) -> None:
    raw = orjson.dumps(value)

    def has_nul(item: object) -> bool:
        if isinstance(item, str):
            return "\x00" in item
        if isinstance(item, list):
            return any(has_nul(i) for i in item)
        if isinstance(item, dict):
            return any(has_nul(k) or has_nul(v) for k, v in item.items())
        return False

    if has_nul(value):
        with pytest.raises(ValidationError):
            check_json_text(raw)
    else:
        check_json_text(raw)
