"""deploy/emqx gives EMQX the same broker rules as the Mosquitto dynamic-security plan.

There is no EMQX here, so the files are read as text: ``acl.conf`` must be what ``render_emqx_acl``
makes of the shared rule table, and, parsed independently, must grant each account of a plan exactly
what the Mosquitto plan grants it (EMQX sees a shared subscription's real topic, so that is compared).
``emqx.conf`` must hold the settings the rules depend on (JWT against the JWKS, no_match = deny, client
ids bound to user names on the callers' listener, mutual TLS on the components' one).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dormant_local.broker_security import (
    RULES,
    BrokerAccount,
    SecurityPlan,
    render_emqx_acl,
    runtime_username,
)

EMQX_DIR = Path(__file__).resolve().parents[2] / "deploy" / "emqx"

_RULE = re.compile(r"^\{(allow|deny), (.+), (publish|subscribe|all), \[(.*)\]\}\.$")
_WHO_EXACT = re.compile(r'^\{username, "([^"]*)"\}$')
_WHO_REGEX = re.compile(r'^\{username, \{re, "(.*)"\}\}$')

Grant = tuple[str, str]


def parse_acl(text: str) -> list[tuple[str, str, str, list[str]]]:
    """(permission, who, action, topics) of every 4-element rule; comments and blank lines skipped."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("%%") or line == "{deny, all}.":
            continue
        match = _RULE.match(line)
        assert match is not None, f"unparsed acl.conf line: {line}"
        topics = re.findall(r'"([^"]*)"', match.group(4))
        rules.append((match.group(1), match.group(2), match.group(3), topics))
    return rules


def who_matches(who: str, username: str) -> bool:
    exact = _WHO_EXACT.match(who)
    if exact:
        return exact.group(1) == username
    pattern = _WHO_REGEX.match(who)
    assert pattern is not None, f"unknown who() term {who}"
    return re.search(pattern.group(1).replace("\\\\", "\\"), username) is not None


def emqx_client_attr_service(username: str) -> str | None:
    """What ``nth(3, tokens(username, '.'))`` in emqx.conf's client_attrs_init gives."""
    tokens = [t for t in username.split(".") if t]
    return tokens[2] if len(tokens) >= 3 else None


def emqx_grants(text: str, account: BrokerAccount) -> set[Grant]:
    grants: set[Grant] = set()
    for permission, who, action, topics in parse_acl(text):
        if not who_matches(who, account.username):
            continue
        assert permission == "allow", f"{account.username} matches a deny rule"
        service = emqx_client_attr_service(account.username)
        for topic in topics:
            topic = topic.replace("${username}", account.username)
            if "${client_attrs.service}" in topic:
                if service is None:
                    continue  # the placeholder does not render: EMQX skips the rule
                topic = topic.replace("${client_attrs.service}", service)
            grants.add((action, topic))
    return grants


def mosquitto_grants(account: BrokerAccount) -> set[Grant]:
    return {
        (rule.action, rule.receive_topic if rule.action == "subscribe" else rule.topic)
        for rule in account.rules()
        if rule.emqx
    }


def test_acl_conf_is_rendered_from_the_rule_table() -> None:
    assert (EMQX_DIR / "acl.conf").read_text(encoding="utf-8") == render_emqx_acl()


@pytest.mark.parametrize(
    "account",
    SecurityPlan.for_mesh(
        services=["user-service", "a"], callers=["alice", "bob.smith@example.com"]
    ).accounts,
    ids=lambda account: account.username,
)
def test_each_account_gets_the_same_rights_in_emqx(account: BrokerAccount) -> None:
    text = (EMQX_DIR / "acl.conf").read_text(encoding="utf-8")
    assert emqx_grants(text, account) == mosquitto_grants(account)


def test_every_rule_has_an_emqx_counterpart_or_says_why_not() -> None:
    text = (EMQX_DIR / "acl.conf").read_text(encoding="utf-8")
    rendered_topics = {topic for _, _, _, topics in parse_acl(text) for topic in topics}
    for rule in RULES:
        if not rule.emqx:
            assert rule.topic.startswith("$CONTROL/dynamic-security/")  # Mosquitto's account API only
            continue
        topic = rule.receive_topic if rule.action == "subscribe" else rule.topic
        topic = topic.replace("{username}", "${username}").replace("{service}", "${client_attrs.service}")
        assert topic in rendered_topics, rule


def test_names_that_break_topics_are_denied_everything() -> None:
    rules = parse_acl((EMQX_DIR / "acl.conf").read_text(encoding="utf-8"))
    assert rules[0][0] == "deny" and rules[0][3] == ["#"]
    for name in ("a/b", "a+", "#"):
        assert who_matches(rules[0][1], name)
    assert not who_matches(rules[0][1], "alice")


def test_the_runtime_service_attribute_is_read_from_the_user_name() -> None:
    assert emqx_client_attr_service(runtime_username("user-service")) == "user-service"
    conf = (EMQX_DIR / "emqx.conf").read_text(encoding="utf-8")
    assert "expression = \"nth(3, tokens(username, '.'))\"" in conf
    assert "set_as_attr = service" in conf


@pytest.mark.parametrize(
    "setting",
    [
        "listeners.tcp.default.enable = false",
        "zones.callers.mqtt.use_username_as_clientid = true",
        "zone = callers",
        "zone = components",
        "fail_if_no_peer_cert = true",
        "mechanism = jwt",
        "use_jwks = true",
        "from = password",
        'sub = "${username}"',
        "iss = ${DORMANT_OIDC_ISSUER}",
        "endpoint = ${DORMANT_OIDC_JWKS_URL}",
        "no_match = deny",
        "deny_action = ignore",
        "type = file",
    ],
)
def test_emqx_conf_holds(setting: str) -> None:
    conf = (EMQX_DIR / "emqx.conf").read_text(encoding="utf-8")
    assert re.search(rf"^\s*{re.escape(setting)}\s*$", conf, re.MULTILINE), setting


def test_emqx_conf_braces_balance() -> None:
    conf = "\n".join(
        line.split("#", 1)[0] if line.lstrip().startswith("#") else line
        for line in (EMQX_DIR / "emqx.conf").read_text(encoding="utf-8").splitlines()
    )
    depth = 0
    for char in conf:
        depth += {"{": 1, "}": -1, "[": 1, "]": -1}.get(char, 0)
        assert depth >= 0
    assert depth == 0
