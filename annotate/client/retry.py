"""Retries with exponential backoff and full jitter on 429, 5xx, timeouts and dropped connections."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import openai

from atomvla.annotate.client.limiter import RateLimiter

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6  # calls in all, the first included
    base_s: float = 1.0  # first backoff ceiling; doubles per attempt
    cap_s: float = 60.0
    timeout_s: float = 120.0  # per request


def backoff_s(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempt)] (attempt 0 = first retry)."""
    return rng.uniform(0, min(policy.cap_s, policy.base_s * 2**attempt))


def retry_after_s(exc: Exception) -> float | None:
    """The server's `retry-after-ms` / `retry-after` (seconds or an HTTP date), if it sent one."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    headers = response.headers
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed is not None else None


def is_retryable(exc: Exception) -> bool:
    if isinstance(exc, openai.RateLimitError) and exc.code == "insufficient_quota":
        return False  # the account's credit is spent: no wait refills it
    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError)):
        return True
    return isinstance(exc, openai.APIStatusError) and (exc.status_code >= 500 or exc.status_code in (408, 409))


class ResponseError(Exception):
    """The server answered 200 with something that is not the API's response (a proxy's error page)."""


class RetriesExhausted(Exception):
    """Every attempt failed with a retryable error; the message names the last one."""


async def with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    limiter: RateLimiter,
    tokens: int,
    rng: random.Random | None = None,
) -> T:
    """`call()` behind the limiter, retried on transient errors; others propagate at once."""
    rng = rng or random.Random()
    attempt = 0
    while True:
        await limiter.acquire(tokens)
        try:
            return await call()
        except Exception as exc:  # noqa: BLE001  (classified right below)
            if (response := getattr(exc, "response", None)) is not None:
                limiter.update(response.headers)
            if not is_retryable(exc):
                raise
            after = retry_after_s(exc)
            if after is not None and isinstance(exc, openai.RateLimitError):
                limiter.pause(after)
            if attempt + 1 >= policy.attempts:
                raise RetriesExhausted(f"{policy.attempts} attempts failed; last: {_describe(exc)}") from exc
            # The server's retry-after says when; without one, back off exponentially with jitter.
            delay = after if after is not None else backoff_s(attempt, policy, rng)
            log.debug("retrying in %.2fs after %s", delay, _describe(exc))
            await asyncio.sleep(delay)
            attempt += 1


def _describe(exc: Exception) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}"
    if isinstance(exc, openai.APITimeoutError):
        return "request timed out"
    return type(exc).__name__
