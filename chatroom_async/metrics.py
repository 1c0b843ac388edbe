"""Metrics arithmetic: percentiles, throughput windows, and the snapshot dashboards render.

Pure and clock-free: callers pass timestamps. Shared counters live in Redis (see
`TaskQueue.counts`); latency distributions are per process, because they are samples.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation; None for no data."""
    if not sorted_values:
        return None
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass(frozen=True, slots=True)
class LatencySummary:
    count: int
    mean: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return {"count": self.count, "mean": self.mean, "p50": self.p50, "p95": self.p95,
                "p99": self.p99, "max": self.max}


def summarize(values: list[float]) -> LatencySummary:
    """Count, mean, p50/p95/p99 and max of some durations."""
    if not values:
        return LatencySummary(0, None, None, None, None, None)
    ordered = sorted(values)
    return LatencySummary(len(ordered), sum(ordered) / len(ordered), percentile(ordered, 50),
                          percentile(ordered, 95), percentile(ordered, 99), ordered[-1])


@dataclass(slots=True)
class LocalMetrics:
    """What this process saw finish: latencies (submit to end), processing times, and a
    sliding window of finish times for throughput.

    Args:
        window_s: the throughput window.
        keep: how many latency samples to keep (the newest).
    """

    window_s: float = 60.0
    keep: int = 100_000
    latencies: deque[float] = field(default_factory=deque)
    processing: deque[float] = field(default_factory=deque)
    finished_at: deque[float] = field(default_factory=deque)

    def record(self, *, now: float, latency: float, processing_time: float) -> None:
        for series, value in ((self.latencies, latency), (self.processing, processing_time)):
            series.append(value)
            if len(series) > self.keep:
                series.popleft()
        self.finished_at.append(now)

    def throughput(self, now: float) -> float:
        """Tasks finished per second over the last `window_s`."""
        cutoff = now - self.window_s
        while self.finished_at and self.finished_at[0] < cutoff:
            self.finished_at.popleft()
        return len(self.finished_at) / self.window_s
