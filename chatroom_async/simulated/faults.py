"""The simulated provider's failure model: which random fault strikes an attempt, the
incident process, the RPM/TPM buckets and the errors a rejection raises.

Pure arithmetic over settings, the clock's time and seeded generators handed in: nothing
here sleeps or reads a clock. `chatroom_async.simulated` decides when to ask.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from ..errors import (
    AIError,
    ContentFilterError,
    ContextTooLongError,
    OverloadedError,
    RateLimitError,
)
from .call import seed_int
from .settings import FAULT_KINDS, SimSettings

#: Fault kinds that strike after admission (they hold a slot); the others reject at once.
LATE_KINDS = frozenset({"server_error", "hang", "stream_break"})

#: Cumulative probability bands over [0, 1), each ending in the kind it selects.
Bands = tuple[tuple[float, str], ...]


class RateBucket:
    """A continuous-refill token bucket: capacity `per_minute`, refilled at per_minute/60/s."""

    __slots__ = ("capacity", "level", "rate", "stamp")

    def __init__(self, per_minute: float) -> None:
        self.capacity = per_minute
        self.rate = per_minute / 60.0
        self.level = per_minute
        self.stamp: float | None = None

    def shortfall_s(self, cost: float, now: float) -> float:
        """Refill to `now`; seconds until `cost` fits (0.0 if it fits now)."""
        if self.stamp is None or now > self.stamp:  # a clock that steps back refills nothing
            if self.stamp is not None:
                self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now
        missing = min(cost, self.capacity) - self.level  # a huge charge waits for a full bucket
        return 0.0 if missing <= 1e-9 else missing / self.rate

    def take(self, cost: float) -> None:
        """Charge `cost` (capped at the capacity, as `shortfall_s` assumes)."""
        self.level -= min(cost, self.capacity)


class IncidentProcess:
    """Incident on/off periods with exponential lengths, drawn lazily along the clock."""

    __slots__ = ("gap_s", "length_s", "on", "rng", "switch_at")

    def __init__(self, seed: int, gap_s: float, length_s: float, now: float) -> None:
        self.rng = random.Random(seed_int(f"{seed}|incident"))
        self.gap_s, self.length_s = gap_s, length_s
        self.on = False
        self.switch_at = now + self.rng.expovariate(1.0 / gap_s)

    def active(self, now: float) -> bool:
        """Whether an incident is on at `now` (times must not go backwards)."""
        while now >= self.switch_at:
            self.on = not self.on
            mean = self.length_s if self.on else self.gap_s
            self.switch_at += self.rng.expovariate(1.0 / mean)
        return self.on


def fault_bands(rates: Mapping[str, float]) -> Bands:
    """Cumulative probability bands over [0, 1) for the non-zero fault rates."""
    bands, edge = [], 0.0
    for kind in FAULT_KINDS:
        if rates[kind] > 0:
            edge = min(1.0, edge + rates[kind])
            bands.append((edge, kind))
    return tuple(bands)


def pick_fault(bands: Bands, u: float) -> str | None:
    """The kind whose band holds the uniform draw `u`, or None (no fault)."""
    for edge, kind in bands:
        if u < edge:
            return kind
    return None


def incident_bands(s: SimSettings, overload_rate: float) -> Bands:
    """The bands during an incident: overloads at least `overload_rate`."""
    rates = s.fault_rates()
    rates["overloaded"] = max(rates["overloaded"], overload_rate)
    return fault_bands(rates)  # bands past 1.0 are cut: later kinds get squeezed out


def early_error(kind: str, s: SimSettings) -> AIError:
    """The error of a random fault that rejects a call before it takes a slot."""
    if kind == "rate_limit":
        return RateLimitError("1302 账户已达到速率限制 (simulated: rate limited)", code="1302",
                              retry_after=s.retry_after_s)
    if kind == "overloaded":
        return OverloadedError("1305 该模型当前访问量过大，请您稍后再试 (simulated: overloaded)")
    if kind == "content_filter":
        return ContentFilterError("1301 系统检测到输入或生成内容可能包含不安全或敏感内容")
    return ContextTooLongError("1261 Prompt 超长 (simulated: context too long)")
