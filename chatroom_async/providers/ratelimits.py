"""What a provider says about its rate limits: the `x-ratelimit-*` headers of an answer
(OpenAI's names, also sent by DeepSeek, vLLM behind gateways and sim-server) read into one
snapshot, for a caller that paces itself by them.

Pure: a header getter in, a `RateLimits` out. Reset times come as durations ("1s", "6m0s",
"20ms", "0.5") and are read as seconds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimits:
    """The limits an answer announced; None where a header was absent.

    Attributes:
        limit_requests, remaining_requests, reset_requests_s: the request budget.
        limit_tokens, remaining_tokens, reset_tokens_s: the token budget.
        limit_concurrency: calls allowed at once (sim-server's, for a Zhipu-like limit).
        retry_after_s: what the answer asked for (`retry-after-ms` / `retry-after`).
    """

    limit_requests: float | None = None
    remaining_requests: float | None = None
    reset_requests_s: float | None = None
    limit_tokens: float | None = None
    remaining_tokens: float | None = None
    reset_tokens_s: float | None = None
    limit_concurrency: float | None = None
    retry_after_s: float | None = None


def duration_s(raw: str | None) -> float | None:
    """Seconds from "1s", "6m0s", "1h2m3.5s", "20ms" or a bare number; None if unreadable."""
    if raw is None:
        return None
    text = raw.strip()
    try:
        value = float(text)
    except ValueError:
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            return None
        value = sum(float(n) * _UNIT_S[u] for n, u in parts)
    return value if math.isfinite(value) and value >= 0 else None


def read_rate_limits(header: Callable[[str], str | None],
                     retry_after_s: float | None = None) -> RateLimits | None:
    """The snapshot of an answer's headers, or None when it carries none of them."""
    def number(name: str) -> float | None:
        return duration_s(header(f"x-ratelimit-{name}"))

    limits = RateLimits(
        limit_requests=number("limit-requests"), remaining_requests=number("remaining-requests"),
        reset_requests_s=number("reset-requests"), limit_tokens=number("limit-tokens"),
        remaining_tokens=number("remaining-tokens"), reset_tokens_s=number("reset-tokens"),
        limit_concurrency=number("limit-concurrency"), retry_after_s=retry_after_s)
    return None if limits == RateLimits() else limits
