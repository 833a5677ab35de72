"""CLI commands in process, with the catalog and the broker faked: ``token``, ``call`` (its result, its
one-line errors and the catalog's explanation), and the rollout commands (``alias set``, ``approve``,
``rollback``, ``promote``, ``status``, ``history``) with their tables and ``--json``.

The same commands run against a real mesh in tests/e2e/test_cli.py and
tests/integration/rollouts/test_rollout_cli.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from joserfc.jws import extract_compact

import dormant.transport
import dormant_catalog
from dormant import wire
from dormant.errors import NotFound, Unavailable
from dormant.transport import Message, TransportError
from dormant_catalog.rollouts.records import RolloutRecord
from dormant_cli import call_cmd, main, rollout_cmds, token_cmd
from dormant_cli.common import CommandError

NOW = datetime.now(UTC)
DIGEST = "sha256:" + "ab12cd34ef56" + "0" * 52


@pytest.fixture(autouse=True)
def no_mesh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No running dev mesh and no DORMANT_* settings: every URL comes from the test."""
    monkeypatch.chdir(tmp_path)
    for name in ("DORMANT_BROKER_URL", "DORMANT_CATALOG_URL", "DORMANT_LAYER_STORE", "DORMANT_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------------------ token


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("30s", 30), ("15m", 900), ("2h", 7200), ("7d", 604800)]
)
def test_token_lifetimes(text: str, seconds: int) -> None:
    assert token_cmd.parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["0", "-5m", "1w", "soon", ""])
def test_token_lifetimes_that_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="invalid --ttl"):
        token_cmd.parse_ttl(text)


def test_a_token_carries_its_roles_subject_and_lifetime(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["token", "--role", "viewer", "--role", "developer", "--sub", "ann", "--ttl", "15m"]
    code, out, _ = run([*argv, "--state-dir", str(tmp_path / "state")], capsys)
    assert code == 0
    claims = json.loads(extract_compact(out.strip().encode()).payload)
    assert claims["sub"] == "ann" and claims["exp"] - claims["iat"] == 900
    assert sorted(claims["roles"]) == ["developer", "viewer"]
    # The dev key is kept: a second token is signed by the same key.
    _, again, _ = run(["token", "--role", "admin", "--state-dir", str(tmp_path / "state")], capsys)

    def kid(token: str) -> object:
        return extract_compact(token.strip().encode()).protected["kid"]

    assert kid(again) == kid(out)
    code, _, err = run(["token", "--role", "admin", "--ttl", "forever", "--state-dir", str(tmp_path)], capsys)
    assert code == 1 and err.startswith("error: invalid --ttl 'forever'")


# ------------------------------------------------------------------------------------------ call


def fake_call(result: Any = None, error: Exception | None = None) -> Callable[..., Awaitable[Any]]:
    seen: list[tuple[Any, ...]] = []

    async def call(broker_url: str, service: str, function: str, params: Any, args: Any) -> Any:
        seen.append((broker_url, service, function, params, args.version, args.call_id, args.timeout))
        if error is not None:
            raise error
        return result

    call.seen = seen  # type: ignore[attr-defined]
    return call


def test_call_prints_the_json_result(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = fake_call({"userId": "u1", "tags": ["a"]})
    monkeypatch.setattr(call_cmd, "_call", fake)
    argv = ["call", "users.getUser", '{"id": 1}', "--version", "2", "--call-id", "c-9", "--timeout", "4"]
    code, out, err = run([*argv, "--broker-url", "mqtt://b:1"], capsys)
    assert code == 0 and err == ""
    assert json.loads(out) == {"userId": "u1", "tags": ["a"]}
    assert fake.seen == [("mqtt://b:1", "users", "getUser", {"id": 1}, 2, "c-9", 4.0)]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["call", "users", "{}"], "the target must be SERVICE.FUNCTION"),
        (["call", "users.", "{}"], "the target must be SERVICE.FUNCTION"),
        (["call", "users.f", "{not json"], "the input is not valid JSON"),
    ],
)
def test_call_refuses_a_bad_target_or_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    monkeypatch.setattr(call_cmd, "_call", fake_call())
    code, out, err = run(argv, capsys)
    assert code == 1 and out == "" and err.startswith(f"error: {message}") and len(err.splitlines()) == 1


def test_a_typed_error_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(call_cmd, "_call", fake_call(error=NotFound("users has no function 'f'")))
    code, out, err = run(["call", "users.f"], capsys)
    assert (code, out, err) == (1, "", "error: NotFound: users has no function 'f'\n")


def test_an_unreachable_broker_names_its_url_and_where_it_came_from(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    refused = Unavailable("cannot connect to the broker: connection refused", {"broker": "mqtt://b:1"})
    monkeypatch.setattr(call_cmd, "_call", fake_call(error=refused))
    monkeypatch.setenv("DORMANT_BROKER_URL", "mqtt://b:1")
    code, _, err = run(["call", "users.f"], capsys)
    assert code == 1 and len(err.splitlines()) == 1
    assert "mqtt://b:1" in err and "DORMANT_BROKER_URL" in err


class StateCatalog:
    def __init__(self, state: dict[str, Any] | None) -> None:
        self.state = state
        self.closed = False

    async def service_state(self, service: str) -> dict[str, Any] | None:
        return self.state

    async def close(self) -> None:
        self.closed = True


def unserved(version: int | None = None) -> Unavailable:
    details = {"service": "users", "function": "f", "version": version, "topic": "service/users/f"}
    return Unavailable("nothing is serving users.f", {**details, "noSubscribers": True, "callId": "c1"})


def test_a_call_that_reached_nobody_is_explained_from_the_catalog(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = StateCatalog(None)

    async def open_catalog(url: str, **kwargs: Any) -> StateCatalog:
        assert url == "postgresql://cat/x"
        return catalog

    monkeypatch.setattr(dormant_catalog, "open_catalog", open_catalog)
    monkeypatch.setattr(call_cmd, "_call", fake_call(error=unserved()))
    code, _, err = run(["call", "users.f", "--catalog-url", "postgresql://cat/x"], capsys)
    # Without a controller the client could only say "unavailable"; the catalog knows there is no such
    # service.
    assert code == 1 and err == "error: NotFound: no service named 'users'\n"
    assert catalog.closed


async def test_the_catalogs_explanation_keeps_the_call_id_and_falls_back_when_unreadable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = {
        "latest": 1,
        "live": 1,
        "state": "failed",
        "reason": "v1 failed to start: ImportError",
        "versions": {"1": {"state": "failed", "reason": "ImportError"}},
    }

    async def open_catalog(url: str, **kwargs: Any) -> StateCatalog:
        return StateCatalog(state)

    monkeypatch.setattr(dormant_catalog, "open_catalog", open_catalog)
    better = await call_cmd.explain_from_catalog("postgresql://x", unserved())
    assert isinstance(better, Unavailable) and "ImportError" in better.message
    assert better.details["callId"] == "c1"

    async def unreachable(url: str, **kwargs: Any) -> StateCatalog:
        raise OSError("connection refused")

    monkeypatch.setattr(dormant_catalog, "open_catalog", unreachable)
    original = unserved()
    assert await call_cmd.explain_from_catalog("postgresql://x", original) is original
    no_details = Unavailable("broker down")
    assert await call_cmd.explain_from_catalog("postgresql://x", no_details) is no_details


# ------------------------------------------------------------------------------------------ rollouts


def rollout(**changes: Any) -> RolloutRecord:
    fields: dict[str, Any] = {
        "rollout_id": 4,
        "app_name": "users",
        "from_version": 1,
        "to_version": 2,
        "strategy": "canary",
        "config": {"strategy": "canary", "increments": [10, 50, 100], "stepDuration": "30s"},
        "state": "running",
        "step": 1,
        "step_started_at": NOW,
        "reason": None,
        "numbers": {},
        "retire_version": None,
        "retire_at": None,
        "created_by": "cli",
        "created_at": NOW - timedelta(minutes=3),
        "updated_at": NOW,
        "finished_at": None,
    }
    fields.update(changes)
    return RolloutRecord(**fields)


class RolloutCatalog:
    """What the rollout commands read and change, recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.rollouts = [rollout()]
        self.audit = [
            SimpleNamespace(
                id=7,
                at=NOW,
                actor="cli",
                action="alias.set",
                detail={"alias": "live", "weights": {"1": 90, "2": 10}, "image": f"users@{DIGEST}"},
                kind="deployment",
            )
        ]
        self.audit_filters: dict[str, Any] = {}

    async def set_alias(self, service: str, name: str, weights: dict[int, int], **kw: Any) -> None:
        self.calls.append(("set_alias", service, name, weights, kw))

    async def set_version_status(self, service: str, version: int, status: str, **kw: Any) -> None:
        self.calls.append(("set_version_status", service, version, status, kw))

    async def rollback(self, service: str, **kw: Any) -> str:
        self.calls.append(("rollback", service, kw))
        return f"{service}: rolled back to v1"

    async def promote(self, service: str, **kw: Any) -> str:
        self.calls.append(("promote", service, kw))
        return f"{service}: v2 at 100 %"

    async def deployment_status(self, service: str) -> Any:
        return SimpleNamespace(state="running", reason="2 of 2 replicas serving v2", replicas=2, serving=2)

    async def get_deployment(self, service: str) -> Any:
        return SimpleNamespace(target_version=2, strategy="canary", status="active", status_reason=None)

    async def list_aliases(self, service: str) -> dict[str, dict[int, int]]:
        return {"live": {1: 90, 2: 10}}

    async def pool(self) -> list[Any]:
        return []

    async def list_rollouts(self, service: str, *, limit: int) -> list[RolloutRecord]:
        return self.rollouts[:limit]

    async def list_slots(self, service: str) -> list[Any]:
        return [
            SimpleNamespace(slot_index=0, version=2, pod_id="pod-a", serving=True, last_error=None),
            SimpleNamespace(slot_index=1, version=2, pod_id=None, serving=False, last_error="ImportError: x"),
        ]

    async def list_audit(
        self,
        service: str,
        *,
        limit: int,
        kinds: list[str] | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: Any = None,
    ) -> list[Any]:
        self.audit_filters = {"kinds": kinds, "actor": actor, "action": action, "since": since}
        return [a for a in self.audit if kinds is None or a.kind in kinds][:limit]


@pytest.fixture
def catalog(monkeypatch: pytest.MonkeyPatch) -> RolloutCatalog:
    fake = RolloutCatalog()

    def with_catalog(
        args: Any, work: Callable[[Any], Coroutine[Any, Any, Any]], *, read_only: bool = False
    ) -> Any:
        return asyncio.run(work(fake))

    monkeypatch.setattr(rollout_cmds, "with_catalog", with_catalog)
    return fake


def test_alias_weights_are_parsed_and_set(
    catalog: RolloutCatalog, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["alias", "set", "users", "live", "1=90", "v2=10", "--force"], capsys)
    assert code == 0 and out == "users live -> v1=90, v2=10\n"
    assert catalog.calls == [("set_alias", "users", "live", {1: 90, 2: 10}, {"actor": "cli", "force": True})]


@pytest.mark.parametrize("item", ["1:90", "x=10", "1=ten", "=5"])
def test_alias_weights_that_are_refused(
    catalog: RolloutCatalog, capsys: pytest.CaptureFixture[str], item: str
) -> None:
    code, _, err = run(["alias", "set", "users", "live", item], capsys)
    assert code == 1 and err == f"error: not VERSION=WEIGHT: {item!r}\n"
    assert catalog.calls == []


def test_approve_rollback_and_promote_say_what_they_did(
    catalog: RolloutCatalog, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["approve", "users", "2"], capsys)[1] == "users v2 is approved\n"
    assert run(["approve", "users", "1", "--status", "deprecated"], capsys)[1] == "users v1 is deprecated\n"
    assert run(["rollback", "users"], capsys)[1] == "users: rolled back to v1\n"
    assert run(["promote", "users"], capsys)[1] == "users: v2 at 100 %\n"
    assert [c[0] for c in catalog.calls] == [
        "set_version_status",
        "set_version_status",
        "rollback",
        "promote",
    ]
    assert catalog.calls[1][1:4] == ("users", 1, "deprecated")


def test_status_as_json_has_every_part(catalog: RolloutCatalog, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["status", "users", "--json", "--listen", "0"], capsys)
    data = json.loads(out)
    assert code == 0 and data["service"] == "users"
    assert data["deployment"] == {"version": 2, "strategy": "canary", "status": "active", "reason": None}
    assert data["serving"] == {
        "state": "running",
        "reason": "2 of 2 replicas serving v2",
        "replicas": 2,
        "serving": 2,
    }
    assert data["aliases"] == {"live": {"1": 90, "2": 10}}
    assert data["rollout"]["rolloutId"] == 4 and data["rollout"]["percent"] == 50
    assert [s["pod"] for s in data["slots"]] == ["pod-a", None] and data["stats"] == {}


def test_status_as_text_shows_the_record_slots_and_live_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    data = {
        "service": "users",
        "deployment": {"version": 2, "strategy": "canary", "status": "failed", "reason": "v2 crashed"},
        "serving": {"state": "running", "reason": "1 of 2 replicas serving", "replicas": 2, "serving": 1},
        "aliases": {"live": {"1": 90, "2": 10}},
        "rollout": rollout(reason="error rate 0.3 over 0.05").to_json(),
        "slots": [
            {"index": 0, "version": 2, "pod": "pod-a", "serving": True, "error": None},
            {"index": 1, "version": 2, "pod": None, "serving": False, "error": "ImportError: x"},
        ],
        "stats": {
            "2": {"calls": 40, "errorRate": 0.3, "successRate": 0.7, "latencyP99Ms": 12.5, "pods": ["pod-a"]}
        },
    }
    rollout_cmds.status_view(data, 5)
    out = capsys.readouterr().out
    assert "v2 (canary) failed: v2 crashed" in out
    assert "#4 canary v1 -> v2: running, step 2 (50 %): error rate 0.3 over 0.05" in out
    assert "ImportError: x" in out and "last 5 s" in out and "0.3" in out and "pod-a" in out


def test_history_lists_rollouts_and_the_audit_log(
    catalog: RolloutCatalog, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["history", "users"], capsys)
    assert code == 0
    assert "v1 -> v2" in out and "2 (50 %)" in out and "alias.set" in out
    assert "image=users@sha256:ab12cd34ef56" in out and "0" * 52 not in out  # digests shortened
    assert 'weights={"1":90,"2":10}' in out
    code, out, _ = run(["history", "users", "--json"], capsys)
    data = json.loads(out)
    assert data["rollouts"][0]["rolloutId"] == 4 and data["audit"][0]["action"] == "alias.set"


def test_history_of_an_unknown_service_is_one_error_line(
    catalog: RolloutCatalog, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog.rollouts, catalog.audit = [], []
    code, out, err = run(["history", "nosuch"], capsys)
    assert (code, out) == (1, "") and err == "error: no service named 'nosuch': nothing is recorded for it\n"
    bare = SimpleNamespace(
        service="nosuch", limit=5, json=False, kind=None, actor=None, action=None, since=None
    )
    with pytest.raises(CommandError):
        rollout_cmds.run_history(bare)  # type: ignore[arg-type]


def test_history_filters_reach_the_catalog_and_bad_ones_are_refused(
    catalog: RolloutCatalog, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, _ = run(
        ["history", "users", "--kind", "execution,security", "--actor", "ann", "--since", "1h"], capsys
    )
    assert code == 0
    filters = catalog.audit_filters
    assert filters["kinds"] == ["execution", "security"] and filters["actor"] == "ann"
    assert filters["since"] is not None
    assert run(["history", "users"], capsys)[0] == 0
    assert "execution" not in catalog.audit_filters["kinds"]  # the default leaves calls out
    assert run(["history", "users", "--kind", "all"], capsys)[0] == 0
    assert len(catalog.audit_filters["kinds"]) == 4
    code, _, err = run(["history", "users", "--kind", "deploys"], capsys)
    assert code == 1 and "--kind: deploys" in err
    code, _, err = run(["history", "users", "--since", "yesterday"], capsys)
    assert code == 1 and "--since" in err


class StatsFeed:
    """A broker connection that delivers prepared stats windows, then goes quiet."""

    def __init__(self, windows: list[Message], refuse: bool = False) -> None:
        self.windows = windows
        self.refuse = refuse
        self.subscribed: list[str] = []
        self.closed = False

    async def connect(self) -> None:
        if self.refuse:
            raise TransportError("connection refused")

    async def subscribe(self, filters: Sequence[str], qos: int = 1) -> None:
        self.subscribed += filters

    async def messages(self) -> AsyncIterator[Message]:
        for window in self.windows:
            yield window
        await asyncio.Event().wait()

    async def close(self, *, end_session: bool = False) -> None:
        self.closed = True


def window(calls: int, ok: int) -> bytes:
    return orjson.dumps(
        {
            "calls": calls,
            "ok": ok,
            "errors": {"SystemError": calls - ok} if calls > ok else {},
            "latency": {"le": [10, 100], "counts": [ok, calls - ok, 0]},
        }
    )


async def test_live_stats_are_summed_per_version_with_their_pods(monkeypatch: pytest.MonkeyPatch) -> None:
    feed = StatsFeed(
        [
            Message(wire.stats_topic("users", 1, "pod-a"), window(10, 10)),
            Message(wire.stats_topic("users", 2, "pod-b"), window(10, 5)),
            Message(wire.stats_topic("users", 2, "pod-c"), window(10, 5)),
            Message("mesh/stats/users/garbage", b"x"),
        ]
    )
    monkeypatch.setattr(dormant.transport, "new_transport", lambda url, **kw: feed)
    numbers = await rollout_cmds.read_stats("mqtt://b:1", "users", 0.2)
    assert feed.subscribed == [wire.stats_filter("users")] and feed.closed
    assert set(numbers) == {1, 2}
    assert numbers[1]["calls"] == 10 and numbers[1]["pods"] == ["pod-a"]
    assert numbers[2]["calls"] == 20 and numbers[2]["pods"] == ["pod-b", "pod-c"]
    assert numbers[2]["errorRate"] == pytest.approx(0.5)


async def test_live_stats_without_a_broker_are_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    feed = StatsFeed([], refuse=True)
    monkeypatch.setattr(dormant.transport, "new_transport", lambda url, **kw: feed)
    assert await rollout_cmds.read_stats("mqtt://b:1", "users", 5) == {}
    assert feed.closed


def test_the_controller_needs_a_catalog(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        rollout_cmds, "settings_from", lambda args: SimpleNamespace(catalog_url="", broker_url="mqtt://b:1")
    )
    code, _, err = run(["controller"], capsys)
    assert code == 1 and "the controller needs a catalog" in err
