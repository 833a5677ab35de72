"""``VerifiedTokens``: tokens already verified, kept until they expire, so a caller that repeats its
token pays one dictionary lookup per call instead of a signature check."""

from __future__ import annotations

import time
from collections import OrderedDict

from dormant.context import UserContext


class VerifiedTokens:
    """At most ``capacity`` entries, least recently used dropped first. An entry is never used past
    its token's ``exp`` (nor past ``max_age_s``, for introspected tokens whose answer may change)."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, tuple[UserContext, float]] = OrderedDict()

    def get(self, token: str) -> UserContext | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        user, expires_at = entry
        if time.time() >= expires_at:
            del self._entries[token]
            return None
        self._entries.move_to_end(token)
        return user

    def put(self, token: str, user: UserContext, expires_at: float) -> None:
        self._entries[token] = (user, expires_at)
        self._entries.move_to_end(token)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
