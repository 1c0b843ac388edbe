"""`Frame`: everything one dashboard picture shows, as plain numbers.

A live dashboard builds frames from the processor's stats and events (`sampler`), a
replay builds one from a `SimulationReport` (`replay`); `figure` draws either. Frames are
immutable snapshots, so a frame can be drawn on a worker thread while the loop moves on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

#: Queue-depth bands, top of the stack first: the four priorities and the retry wait.
QUEUE_BANDS = ("urgent", "high", "normal", "low", "retry wait")

#: The latency groups and the percentiles drawn for each.
LATENCY_GROUPS = ("queue wait", "processing")
PERCENTILES = ("p50", "p95", "p99")

Summary = Mapping[str, float | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """The six panels' data. Times are seconds since the dashboard (or the run) began.

    Attributes:
        title: the figure's title.
        subtitle: one line of headline numbers under it.
        t: the sample times.
        completed_per_s: tasks completed per second, per sample interval.
        submitted_per_s: tasks submitted per second (the offered load), or empty.
        queue: waiting tasks per band of `QUEUE_BANDS` (a replay has only "all priorities").
        in_flight: tasks being processed.
        limit: the concurrency limit at each sample, or empty when unknown.
        latency_series: "<group> <pct>" -> values over time (live), or empty.
        latency: group -> {"p50", "p95", "p99"} over the recent window or the whole run.
        retries_by_kind, failures_by_kind: error type -> count.
        rate_limited_per_s: the provider's 429s per second over time (live), or empty.
        rate_limited_by_code: the provider's 429s by cause (replay), or empty.
    """

    title: str
    subtitle: str = ""
    t: Sequence[float] = ()
    completed_per_s: Sequence[float] = ()
    submitted_per_s: Sequence[float] = ()
    queue: Mapping[str, Sequence[float]] = field(default_factory=dict)
    in_flight: Sequence[float] = ()
    limit: Sequence[float] = ()
    latency_series: Mapping[str, Sequence[float | None]] = field(default_factory=dict)
    latency: Mapping[str, Summary] = field(default_factory=dict)
    retries_by_kind: Mapping[str, int] = field(default_factory=dict)
    failures_by_kind: Mapping[str, int] = field(default_factory=dict)
    rate_limited_per_s: Sequence[float] = ()
    rate_limited_by_code: Mapping[str, int] = field(default_factory=dict)
