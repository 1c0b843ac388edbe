"""Retry decisions: whether to retry, and how long to wait. Pure; time and rng passed in.

The chapter re-queued every failure at once, retrying permanent errors and hammering a
failing API in lock-step (defect 5). Here: only retryable errors are retried, after an
exponential backoff with jitter, capped, and never sooner than the provider's `retry_after`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .errors import AIError


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with jitter.

    The n-th retry (n = 1, 2, ...) waits `min(cap_s, base_s * factor**(n-1))`, scaled by
    jitter: "full" draws uniformly from [0, d] (AWS's full jitter, best at spreading a
    thundering herd), "equal" from [d/2, d], "none" waits exactly d. A `retry_after` from
    the provider raises the wait to at least that, up to `max_retry_after_s`; a provider
    asking for more than that is not retried at all.

    A rate limit the provider announces (HTTP 429: its concurrency limit, or its request
    or token rate) says "not now", not "this request is bad": such an attempt is retried
    on a budget of its own, `rate_limit_retries`, which does not use up the task's
    `max_retries`. It waits `retry_after` when the provider sends one (plus up to 20 %, so
    the tasks it turned away do not all come back at once), else the backoff above, by
    the number of rate-limited attempts. With the budget spent, a 429 counts as an ordinary
    retryable error.
    """

    base_s: float = 0.5
    factor: float = 2.0
    cap_s: float = 8.0
    jitter: str = "equal"
    max_retry_after_s: float = 120.0
    rate_limit_retries: int = 50

    def __post_init__(self) -> None:
        if self.jitter not in ("full", "equal", "none"):
            raise ValueError(f"jitter must be 'full', 'equal' or 'none', got {self.jitter!r}")
        if self.base_s < 0 or self.cap_s < 0 or self.factor < 1:
            raise ValueError("base_s and cap_s must be >= 0 and factor >= 1")
        if not isinstance(self.rate_limit_retries, int) or self.rate_limit_retries < 0:
            raise ValueError(f"rate_limit_retries must be an int >= 0, "
                             f"got {self.rate_limit_retries!r}")

    def backoff(self, retry_number: int, rng: random.Random) -> float:
        """Seconds to wait before retry number `retry_number` (1-based), ignoring retry_after."""
        delay = min(self.cap_s, self.base_s * self.factor ** max(0, retry_number - 1))
        if self.jitter == "full":
            return rng.uniform(0.0, delay)
        if self.jitter == "equal":
            return rng.uniform(delay / 2, delay)
        return delay

    def next_delay(self, error: AIError, retry_count: int, max_retries: int,
                   rng: random.Random) -> float | None:
        """The wait before the next attempt, or None when the task must fail now.

        Args:
            error: what the last attempt raised.
            retry_count: retries already made before this failure.
            max_retries: the task's retry budget.
            rng: the jitter's random source.
        """
        if not error.retryable or retry_count >= max_retries:
            return None
        delay = self.backoff(retry_count + 1, rng)
        if error.retry_after is not None:
            if error.retry_after > self.max_retry_after_s:
                return None
            delay = max(delay, error.retry_after)
        return delay

    def rate_limit_delay(self, error: AIError, rate_limited: int,
                         rng: random.Random) -> float | None:
        """The wait before retrying an attempt a provider's rate limit ended, or None when
        the error is no rate limit, the budget is spent, or `retry_after` is too long.

        Args:
            error: what the last attempt raised.
            rate_limited: the task's earlier attempts that ended in a rate limit.
            rng: the jitter's random source.
        """
        if error.status != 429 or rate_limited >= self.rate_limit_retries:
            return None
        if error.retry_after is None:
            return self.backoff(rate_limited + 1, rng)
        if error.retry_after > self.max_retry_after_s:
            return None
        return error.retry_after + rng.uniform(0.0, 0.2 * error.retry_after + 0.01)
