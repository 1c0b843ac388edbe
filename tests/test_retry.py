from __future__ import annotations

import random

import pytest

from chatroom_async import (
    AITimeoutError,
    ContentFilterError,
    OverloadedError,
    RateLimitError,
    RetryPolicy,
)


def test_backoff_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(base_s=0.5, factor=2, cap_s=4, jitter="none")
    rng = random.Random(1)
    assert [policy.backoff(n, rng) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]


@pytest.mark.parametrize("jitter,low", [("full", 0.0), ("equal", 0.5)])
def test_jitter_stays_in_range_and_spreads(jitter: str, low: float) -> None:
    policy = RetryPolicy(base_s=1, factor=2, cap_s=100, jitter=jitter)
    rng = random.Random(42)
    delays = [policy.backoff(3, rng) for _ in range(500)]
    assert all(4 * low <= d <= 4 for d in delays)
    assert len({round(d, 6) for d in delays}) > 400  # not synchronised


def test_retryable_errors_are_retried_until_the_budget_is_spent() -> None:
    policy = RetryPolicy(jitter="none")
    rng = random.Random(0)
    for error in (AITimeoutError("t"), OverloadedError("o"), RateLimitError("r")):
        assert policy.next_delay(error, 0, 3, rng) == 0.5
        assert policy.next_delay(error, 2, 3, rng) == 2.0
        assert policy.next_delay(error, 3, 3, rng) is None


def test_permanent_errors_are_never_retried() -> None:
    assert RetryPolicy().next_delay(ContentFilterError("no"), 0, 3, random.Random(0)) is None


def test_retry_after_is_honoured_and_bounded() -> None:
    policy = RetryPolicy(jitter="none", max_retry_after_s=60)
    rng = random.Random(0)
    assert policy.next_delay(RateLimitError("r", retry_after=7.5), 0, 3, rng) == 7.5
    assert policy.next_delay(RateLimitError("r", retry_after=0.1), 2, 3, rng) == 2.0
    assert policy.next_delay(RateLimitError("r", retry_after=600), 0, 3, rng) is None


def test_bad_policy_settings_fail_loudly() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(jitter="random")
    with pytest.raises(ValueError):
        RetryPolicy(factor=0.5)
