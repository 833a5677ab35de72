"""``TakeoverWatch``: when a client's lost connections mean another connection took its session over."""

from __future__ import annotations

from dormant.transport import SESSION_TAKEN_OVER, TAKEOVER_LOSSES, TAKEOVER_WINDOW_S, TakeoverWatch


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_brokers_reason_code_is_enough() -> None:
    watch = TakeoverWatch()
    watch.connected()
    assert watch.lost(SESSION_TAKEN_OVER) == "the broker said so (reason code 0x8e)"


def test_silent_losses_soon_after_each_reconnect_add_up_to_a_takeover() -> None:
    clock = Clock()
    watch = TakeoverWatch(clock=clock)
    watch.connected()
    clock.now += 3600  # the first loss may come at any time after connecting
    for _ in range(TAKEOVER_LOSSES - 1):
        assert watch.lost(None) is None
        watch.connected()
        clock.now += TAKEOVER_WINDOW_S / 2
    evidence = watch.lost(None)
    assert evidence is not None and f"{TAKEOVER_LOSSES} times in a row" in evidence


def test_a_loss_long_after_connecting_starts_the_count_again() -> None:
    clock = Clock()
    watch = TakeoverWatch(clock=clock, losses=2)
    watch.connected()
    assert watch.lost(None) is None
    watch.connected()
    clock.now += TAKEOVER_WINDOW_S + 1  # a connection that lived: an ordinary network loss
    assert watch.lost(None) is None
    watch.connected()
    assert watch.lost(None) is not None


def test_a_failed_reconnect_or_a_loss_with_a_reason_is_not_a_takeover() -> None:
    watch = TakeoverWatch(losses=2)
    watch.connected()
    assert watch.lost(None) is None
    watch.unreachable()  # the broker was down: whatever closed the connection, not another client
    watch.connected()
    assert watch.lost(None) is None
    watch.connected()
    assert watch.lost(0x8B) is None  # "server shutting down"
    watch.connected()
    assert watch.lost(None) is None
