"""``TakeoverWatch``: telling, from the way a client's connections end, that another connection with
the same client id took its broker session over.

Two connections with one client id take the session from each other: each time one (re)connects, the
broker closes the other. If both reconnect, they do so for ever. The newer connection should win, so
the one taken over must stop reconnecting, and it must know it was taken over:

* EMQX and Mosquitto 2.0.15 and later say so: a DISCONNECT with reason code 0x8E "session taken over";
* older Mosquitto closes the connection without a word. Then the evidence is the pattern: the
  connection closed without a reason ``TAKEOVER_LOSSES`` times in a row, every time but the first
  within ``TAKEOVER_WINDOW_S`` of connecting, and reconnecting succeeded each time (a broker that is
  down or restarting fails the reconnect: ``unreachable()`` resets the count). The client taken over
  first (the older one) reaches the count first and stops.

The client (``dormant.Client``) and the runtime's server both keep one per connection loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ._base import SESSION_TAKEN_OVER

TAKEOVER_LOSSES = 3
TAKEOVER_WINDOW_S = 5.0


class TakeoverWatch:
    """Counts a connection loop's silent losses; ``lost()`` says when they add up to a takeover."""

    def __init__(
        self,
        *,
        losses: int = TAKEOVER_LOSSES,
        window_s: float = TAKEOVER_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._losses = losses
        self._window_s = window_s
        self._clock = clock
        self._connected_at = clock()
        self._silent_losses = 0

    def connected(self) -> None:
        """A connection was made (and subscribed): the window for its loss starts now."""
        self._connected_at = self._clock()

    def unreachable(self) -> None:
        """A reconnect failed: the broker is not there, so whatever closed the connection, it was not
        another client."""
        self._silent_losses = 0

    def lost(self, reason: int | None) -> str | None:
        """The connection ended with ``reason`` (None: closed without one). Returns the evidence when
        that means another connection took the session over, else None (reconnect)."""
        if reason == SESSION_TAKEN_OVER:
            return "the broker said so (reason code 0x8e)"
        if reason is not None:
            self._silent_losses = 0
            return None
        recent = self._clock() - self._connected_at < self._window_s
        self._silent_losses = self._silent_losses + 1 if recent else 1
        if self._silent_losses < self._losses:
            return None
        return (
            f"the broker closed its connection without a reason {self._silent_losses} times in a row, "
            f"within {self._window_s:g} s of reconnecting"
        )
