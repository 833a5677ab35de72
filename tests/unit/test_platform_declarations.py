"""What a handler class declares for the platform (``resiliency``) takes effect, and the in-process
Messaging's binary transfers honour ``chunk_size`` and ``timeout`` as the broker-backed one does."""

from __future__ import annotations

import pytest

from dormant import UserContext
from dormant.errors import TimeoutError, ValidationError
from dormant.messaging import ResiliencyPolicy, declared_resiliency
from dormant.testing import MemoryBus, MemoryMessaging


def test_declared_policies_are_the_runtimes() -> None:
    class Declares:
        resiliency = {
            "payments": ResiliencyPolicy(max_retries=5),
            "payments.refund": ResiliencyPolicy(max_retries=0),
            "*": ResiliencyPolicy(max_retries=1),
        }

    resiliency = declared_resiliency(Declares)
    assert resiliency.policy_for("payments.charge").max_retries == 5
    assert resiliency.policy_for("payments.refund").max_retries == 0
    assert resiliency.policy_for("users.get").max_retries == 1


def test_no_declaration_means_the_defaults_and_a_wrong_one_is_refused() -> None:
    class Plain:
        pass

    class Wrong:
        resiliency = {"payments": 3}

    assert declared_resiliency(Plain).policy_for("x.y") == ResiliencyPolicy()
    with pytest.raises(ValidationError, match="ResiliencyPolicy"):
        declared_resiliency(Wrong)


async def test_binary_transfers_are_chunked_and_joined() -> None:
    bus = MemoryBus()
    messaging = MemoryMessaging(bus, UserContext(user_id="ann"), "parent")
    data = bytes(range(256)) * 10
    await messaging.send_binary("scans", data, chunk_size=1000)
    assert [len(chunk) for chunk in bus.transfers["scans"][0]] == [1000, 1000, 560]
    assert await messaging.receive_binary("scans") == data
    with pytest.raises(ValidationError):
        await messaging.send_binary("scans", data, chunk_size=0)


async def test_receiving_waits_up_to_its_timeout() -> None:
    messaging = MemoryMessaging(MemoryBus(), UserContext(user_id="ann"), "parent")
    with pytest.raises(TimeoutError, match=r"within 0\.05s"):
        await messaging.receive_binary("nothing", timeout=0.05)
