"""An async rate limiter fed by the server's own headers.

`x-ratelimit-remaining-{requests,tokens}` with `x-ratelimit-reset-{requests,tokens}` say how much
is left and when the window refills; `retry-after` (on a 429) pauses every caller. Requests admitted
between two responses are counted locally so a burst does not overshoot what the server said.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
# OpenAI's request and token limits are per minute; a longer reset belongs to a daily limit, which
# must not stretch the window assumed after a reset.
WINDOW_CAP_S = 60.0


def parse_duration(text: str) -> float | None:
    """OpenAI's reset durations (`1s`, `6m0s`, `20ms`, `1h2m3.5s`) or plain seconds, in seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


class _Budget:
    """One limited quantity (requests or tokens): what is left until `reset_at`.

    When a window ends before the server has said more, it is assumed refilled to the announced
    limit for as long as the longest window seen, so callers released together (after a
    retry-after) do not all go at once.
    """

    def __init__(self) -> None:
        self.remaining: float | None = None  # None: the server has not said
        self.limit: float | None = None
        self.window = 0.0
        self.reset_at = 0.0

    def update(self, limit: str | None, remaining: str | None, reset: str | None, now: float) -> None:
        if remaining is None:
            return
        try:
            self.remaining = float(remaining)
            self.limit = float(limit) if limit is not None else self.limit
        except ValueError:
            return
        seconds = parse_duration(reset) if reset else None
        seconds = seconds if seconds is not None else 1.0
        self.window = min(WINDOW_CAP_S, max(self.window, seconds))
        self.reset_at = now + seconds

    def _refill(self, now: float) -> None:
        if now >= self.reset_at and self.limit is not None:
            self.remaining, self.reset_at = self.limit, now + self.window

    def wait(self, amount: float, now: float) -> float:
        self._refill(now)
        if self.remaining is None or now >= self.reset_at:
            return 0.0
        return 0.0 if self.remaining >= amount else self.reset_at - now

    def take(self, amount: float, now: float) -> None:
        if self.remaining is not None and now < self.reset_at:
            self.remaining -= amount


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._requests = _Budget()
        self._tokens = _Budget()
        self._paused_until = 0.0
        self.waits = 0  # how often a caller had to wait (reported by the benchmark)

    async def acquire(self, tokens: int) -> None:
        """Wait until one request of about `tokens` input tokens fits what the server allows."""
        while True:
            now = self._clock()
            wait = max(self._paused_until - now, self._requests.wait(1, now), self._tokens.wait(tokens, now))
            if wait <= 0:
                self._requests.take(1, now)
                self._tokens.take(tokens, now)
                return
            self.waits += 1
            await asyncio.sleep(wait)

    def update(self, headers: Mapping[str, str]) -> None:
        now = self._clock()
        for kind, budget in (("requests", self._requests), ("tokens", self._tokens)):
            budget.update(
                headers.get(f"x-ratelimit-limit-{kind}"),
                headers.get(f"x-ratelimit-remaining-{kind}"),
                headers.get(f"x-ratelimit-reset-{kind}"),
                now,
            )

    def pause(self, seconds: float) -> None:
        """Hold every caller for `seconds` (a 429's retry-after)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)
