"""``${SECRET:name#field}`` references: the catalog's parser, its place in the environment rules, and
the resolver's cache and refresh (``dormant_secrets.resolver``) over an in-memory source."""

from __future__ import annotations

import base64
from types import SimpleNamespace
from typing import Any

import pytest

from dormant_catalog.environment import (
    SecretReference,
    SecretReferenceError,
    environment_problems,
    environment_references,
    secret_references,
    settable,
    substitute,
)
from dormant_secrets import SecretResolver, SecretsError
from dormant_secrets.errors import SecretAccessDenied
from dormant_secrets.kubernetes import KubernetesSource
from dormant_secrets.paths import function_policy


def test_references_are_parsed_with_their_field() -> None:
    assert secret_references("postgres://app:${SECRET:db-pass}@db/${SECRET:api#key}") == [
        SecretReference("db-pass"),
        SecretReference("api", "key"),
    ]
    assert secret_references("no references, $HOME and ${OTHER}") == []
    assert SecretReference("api", "key").text == "${SECRET:api#key}"
    assert SecretReference("api").text == "${SECRET:api}"


@pytest.mark.parametrize(
    "value",
    ["${SECRET:unclosed", "${SECRET:}", "${SECRET:a/b}", "${SECRET:../x}", "${SECRET:a#}", "${SECRET:a#b#c}"],
)
def test_a_malformed_reference_is_refused(value: str) -> None:
    with pytest.raises(SecretReferenceError):
        secret_references(value)
    problems = environment_problems({"DSN": value})
    assert problems and problems[0][0] == "DSN"
    assert settable({"DSN": value, "OK": "1"}) == {"OK": "1"}


def test_substitute_replaces_every_reference() -> None:
    values = {SecretReference("u"): "alice", SecretReference("p", "pw"): "x}y"}
    assert substitute("${SECRET:u}:${SECRET:p#pw}@h", values.__getitem__) == "alice:x}y@h"
    assert environment_references({"A": "${SECRET:u}", "B": "plain", "C": "${SECRET:"}) == {
        "A": [SecretReference("u")]
    }


def test_the_policy_grants_own_secrets_and_referenced_shared_ones_only() -> None:
    text = function_policy("svc-a", ["api", "db", "api"])
    assert 'path "secret/data/dormant/functions/svc-a/*"' in text
    assert text.count('path "secret/data/dormant/shared/') == 2
    assert "svc-b" not in text and "update" not in text


class MemorySource:
    def __init__(self) -> None:
        self.own: dict[str, dict[str, str]] = {}
        self.shared: dict[str, dict[str, str]] = {}
        self.denied: set[str] = set()
        self.reads: list[str] = []
        self.down = False

    async def read_function(self, service: str, name: str) -> dict[str, str] | None:
        self.reads.append(f"fn:{name}")
        if self.down:
            raise SecretsError("store down")
        return self.own.get(name)

    async def read_shared(self, name: str) -> dict[str, str] | None:
        self.reads.append(f"shared:{name}")
        if name in self.denied:
            raise SecretAccessDenied("permission denied")
        return self.shared.get(name)

    async def renew(self) -> None:
        pass

    async def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_own_secret_wins_over_shared_and_the_cache_reads_each_secret_once_per_ttl() -> None:
    source, clock = MemorySource(), Clock()
    source.own["db"] = {"value": "own-pw"}
    source.shared["db"] = {"value": "shared-pw"}
    source.shared["api"] = {"value": "v", "key": "k1"}
    env = {"A": "${SECRET:db}", "B": "x-${SECRET:db}", "C": "${SECRET:api#key}", "PLAIN": "p"}
    resolver = SecretResolver(source, "svc", env, ttl_s=30, clock=clock)
    assert await resolver.resolve() == {"A": "own-pw", "B": "x-own-pw", "C": "k1", "PLAIN": "p"}
    assert resolver.reads == 2  # db and api, once each
    assert await resolver.refresh() == {}  # within the TTL: served from the cache
    assert resolver.reads == 2
    source.own["db"] = {"value": "rotated"}
    clock.now += 29.9
    assert await resolver.refresh() == {}
    clock.now += 0.2  # past the TTL
    assert await resolver.refresh() == {"A": "rotated", "B": "x-rotated"}
    assert resolver.reads == 4


async def test_a_failed_refresh_keeps_the_last_value() -> None:
    source, clock = MemorySource(), Clock()
    source.own["db"] = {"value": "pw1"}
    resolver = SecretResolver(source, "svc", {"A": "${SECRET:db}"}, ttl_s=1, clock=clock)
    await resolver.resolve()
    source.down = True
    clock.now += 2
    assert await resolver.refresh() == {}
    source.down = False
    source.own["db"] = {"value": "pw2"}
    clock.now += 2
    assert await resolver.refresh() == {"A": "pw2"}


async def test_a_load_error_names_the_reference_never_a_value() -> None:
    source = MemorySource()
    source.shared["api"] = {"value": "the-value"}
    source.denied.add("other")
    cases = {
        "${SECRET:missing}": "no secret 'missing'",
        "${SECRET:api#nope}": "has no field 'nope'",
        "${SECRET:other}": "read refused",
    }
    for value, expected in cases.items():
        resolver = SecretResolver(source, "svc", {"VAR": value}, ttl_s=1)
        with pytest.raises(SecretsError) as caught:
            await resolver.resolve()
        message = str(caught.value)
        assert message.startswith("VAR: cannot resolve ") and expected in message, message
        assert "the-value" not in message
    assert "the-value" not in repr(SecretResolver(source, "svc", {"V": "${SECRET:api}"}, ttl_s=1))


class FakeCoreV1:
    """A stand-in for kubernetes.client.CoreV1Api: only read_namespaced_secret."""

    def __init__(self, objects: dict[str, dict[str, str]], forbidden: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.objects = objects
        self.forbidden = forbidden
        self.calls: list[tuple[str, str]] = []

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        self.calls.append((name, namespace))
        if name in self.forbidden:
            raise type("ApiException", (Exception,), {"status": 403})()
        if name not in self.objects:
            raise type("ApiException", (Exception,), {"status": 404})()
        data = {k: base64.b64encode(v.encode()).decode() for k, v in self.objects[name].items()}
        return SimpleNamespace(data=data)


async def test_kubernetes_source_reads_service_then_shared_objects() -> None:
    api = FakeCoreV1(
        {
            "dormant-svc": {"db": "own", "api.key": "k-own"},
            "dormant-shared": {"db": "shared", "smtp": "s1", "smtp.user": "bob"},
        },
        forbidden={"dormant-locked"},
    )
    source = KubernetesSource(api, "apps")
    env = {"A": "${SECRET:db}", "B": "${SECRET:api#key}", "C": "${SECRET:smtp}", "D": "${SECRET:smtp#user}"}
    resolved = await SecretResolver(source, "svc", env, ttl_s=30).resolve()
    assert resolved == {"A": "own", "B": "k-own", "C": "s1", "D": "bob"}
    assert ("dormant-shared", "apps") in api.calls
    assert await source.read_function("absent", "db") is None
    with pytest.raises(SecretAccessDenied):
        await source.read_function("locked", "db")


def test_the_load_command_carries_the_token_but_never_shows_it() -> None:
    from pathlib import Path

    from dormant._control import Load, decode_command, encode_command

    load = Load(Path("/app"), "svc", 1, environment={"A": "${SECRET:db}"}, secrets_token="hvs.tok-123")
    assert "tok-123" not in repr(load)
    decoded = decode_command(encode_command(load))
    assert isinstance(decoded, Load) and decoded.secrets_token == "hvs.tok-123"
    assert "tok-123" not in repr(decoded)
    assert decode_command(encode_command(Load(Path("/app"), "svc", 1))) == Load(Path("/app"), "svc", 1)


def test_the_pod_keeps_its_tokens_from_runtimes() -> None:
    from dormant_sidecar.secrets import without_secret_variables

    env = {"DORMANT_VAULT_TOKEN": "a", "DORMANT_VAULT_SIDECAR_TOKEN": "b", "DORMANT_VAULT_ADDR": "http://x"}
    assert without_secret_variables(env) == {"DORMANT_VAULT_ADDR": "http://x"}
