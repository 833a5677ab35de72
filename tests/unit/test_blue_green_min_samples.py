"""Blue-green's test phase: the controller's ``Engine`` switches green to 100 % only once green has
answered ``minSamples`` calls, however short ``testDuration`` is (the store is replaced by a recorder,
so the decision itself is what is tested)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from dormant_catalog.controller import engine as engine_module
from dormant_catalog.controller.engine import Engine
from dormant_catalog.controller.stats import StatsBook
from dormant_catalog.rollouts import parse_config
from dormant_catalog.rollouts.records import RolloutRecord

SERVICE = "probe-service"


def _record(strategy: str, step: int = 0, **config: Any) -> RolloutRecord:
    settings = parse_config({"strategy": strategy, **config}, from_version=1, to_version=2)
    now = datetime.now(UTC)
    return RolloutRecord(
        rollout_id=7,
        app_name=SERVICE,
        from_version=1,
        to_version=2,
        strategy=settings.strategy,
        config=settings.to_json(),
        state="running",
        step=step,
        step_started_at=now,
        reason=None,
        numbers={},
        retire_version=None,
        retire_at=None,
        created_by="test",
        created_at=now,
        updated_at=now,
        finished_at=None,
    )


class Recorder:
    """Stands in for ``dormant_catalog.rollouts.store`` and the audit: records every write."""

    def __init__(self, elapsed: float) -> None:
        self.elapsed = elapsed
        self.updates: list[dict[str, Any]] = []
        self.reasons: list[str] = []

    async def seconds_in_step(self, conn: object, rollout_id: int) -> float:
        return self.elapsed

    async def update_rollout(self, conn: object, rollout_id: int, **fields: Any) -> None:
        self.updates.append(fields)

    async def set_deployment_state(self, conn: object, app: str, *, reason: str | None, **_: Any) -> None:
        self.reasons.append(reason or "")


def _book(calls: int) -> StatsBook:
    book = StatsBook()
    window = {
        "calls": calls,
        "ok": calls,
        "errors": {},
        "latency": {"le": [10, 100], "counts": [calls, 0, 0]},
    }
    book.add(f"mesh/stats/{SERVICE}/v2/pod-a", orjson.dumps(window))
    return book


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder(elapsed=30.0)
    for name in ("seconds_in_step", "update_rollout", "set_deployment_state"):
        monkeypatch.setattr(engine_module.store, name, getattr(rec, name))

    async def no_audit(*args: Any, **kwargs: Any) -> None:
        return None

    monkeypatch.setattr(engine_module, "record_audit", no_audit)
    return rec


async def test_the_test_phase_does_not_switch_on_fewer_calls_than_min_samples(recorder: Recorder) -> None:
    record = _record("BlueGreen", testDuration="PT1S", minSamples=10)
    await Engine(db=None, stats=_book(2))._observe(None, record)  # type: ignore[arg-type]
    assert recorder.updates == []  # still step 0, still 0 %: testDuration is long over, 2 calls are not 10
    assert "2 of 10 calls needed" in recorder.reasons[-1] and "before the switch" in recorder.reasons[-1]


async def test_the_test_phase_switches_once_min_samples_answered(recorder: Recorder) -> None:
    record = _record("BlueGreen", testDuration="PT1S", minSamples=10)
    await Engine(db=None, stats=_book(10))._observe(None, record)  # type: ignore[arg-type]
    assert [u.get("step") for u in recorder.updates] == [1]


async def test_a_zero_percent_canary_step_still_moves_on_after_its_interval(recorder: Recorder) -> None:
    record = _record("canary", increments=[0, 50, 100], stepDuration="PT1S", minSamples=10)
    await Engine(db=None, stats=_book(0))._observe(None, record)  # type: ignore[arg-type]
    assert [u.get("step") for u in recorder.updates] == [1]
