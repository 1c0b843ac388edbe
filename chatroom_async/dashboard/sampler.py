"""`Sampler`: reads a processor's public stats and events into samples and frames.

It never touches Redis: `get_stats()` gives the shared counters, the queue by priority and
the tasks in flight (every process on the namespace); the events give what stats lack, the
queue wait and processing time of each task and the error type of every retry and failure
(a 429 is a `RateLimitError`). So it works on the embedded fakeredis and on a real Redis
whose workers run in other processes.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from chatroom_async import AITask, AsyncAIProcessor

from .frame import LATENCY_GROUPS, PERCENTILES, QUEUE_BANDS, Frame

Limit = int | Callable[[], int | None] | None


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading. Counters are the namespace's totals; `rate_limited` counts the 429s
    heard since the sampler was attached."""

    t: float
    submitted: int
    completed: int
    failed: int
    retried: int
    queue: dict[str, int]
    in_flight: int
    limit: int | None
    rate_limited: int
    latency: dict[str, dict[str, float | None]]
    stats: dict[str, Any]

    @property
    def queued(self) -> int:
        """Tasks waiting, every priority and the retry wait together."""
        return sum(self.queue.values())


def summary(values: list[float]) -> dict[str, float | None]:
    """p50/p95/p99 of some durations (None each when there are none)."""
    if not values:
        return dict.fromkeys(PERCENTILES)
    got = np.percentile(np.asarray(values), [50, 95, 99])
    return {name: float(v) for name, v in zip(PERCENTILES, got, strict=True)}


class Sampler:
    """Samples a processor: `attach()` once, then `await sample()` as often as you like.

    `heard` counts the events received while attached, by kind.

    Args:
        processor: a started processor (any `max_workers`, 0 included).
        limit: the concurrency limit to draw: a number, a callable returning one, or None
            for the slots of every worker pool alive on the namespace (`worker_slots`,
            other processes' included), else the processor's own `max_workers` (nothing
            drawn when both are 0).
        window_s: the latency percentiles cover the events of this many recent seconds.
        keep: how many samples to keep.
        clock: the time source of the sample times.
    """

    def __init__(self, processor: AsyncAIProcessor, *, limit: Limit = None,
                 window_s: float = 30.0, keep: int = 600,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.processor, self.limit, self.window_s, self.clock = processor, limit, window_s, clock
        self.samples: deque[Sample] = deque(maxlen=keep)
        self.retries_by_kind: dict[str, int] = {}
        self.failures_by_kind: dict[str, int] = {}
        self.rate_limited = 0
        self.heard = dict.fromkeys(("started", "completed", "failed", "retrying"), 0)
        self._waits: deque[tuple[float, float]] = deque()
        self._processing: deque[tuple[float, float]] = deque()
        self._t0 = clock()
        self._attached = self._listening = False

    def attach(self) -> None:
        """Add the event callbacks (once; there is no way to remove a callback, so
        `detach` only makes them do nothing)."""
        if not self._listening:
            for event in ("task_started", "task_completed", "task_failed", "task_retrying"):
                self.processor.add_callback(event, getattr(self, "_on_" + event[5:]))
            self._listening = True
        self._attached = True

    def detach(self) -> None:
        self._attached = False

    # -- events ----------------------------------------------------------------------------
    def _on_started(self, task: AITask) -> None:
        self.heard["started"] += self._attached
        if self._attached and task.retry_count == 0 and task.started_at is not None:
            self._waits.append((self.clock(), task.started_at - task.created_at))

    def _on_completed(self, task: AITask) -> None:
        self.heard["completed"] += self._attached
        if self._attached and task.processing_time is not None:
            self._processing.append((self.clock(), task.processing_time))

    def _on_failed(self, task: AITask) -> None:
        self.heard["failed"] += self._attached
        if self._attached:
            self._count(self.failures_by_kind, task)
            if task.processing_time is not None:
                self._processing.append((self.clock(), task.processing_time))

    def _on_retrying(self, task: AITask) -> None:
        self.heard["retrying"] += self._attached
        if self._attached:
            self._count(self.retries_by_kind, task)

    def _count(self, counts: dict[str, int], task: AITask) -> None:
        kind = task.error_type or "unknown"
        counts[kind] = counts.get(kind, 0) + 1
        if kind == "RateLimitError":
            self.rate_limited += 1

    # -- sampling ----------------------------------------------------------------------------
    async def sample(self) -> Sample:
        """Read the stats now and append a sample.

        Raises:
            ProcessorError: the processor is not running.
        """
        stats = await self.processor.get_stats()
        now = self.clock()
        depth = stats["queue_depth"]
        queue = {band: int(depth.get(band, 0)) for band in QUEUE_BANDS[:-1]}
        queue["retry wait"] = int(stats["waiting_retry"])
        s = Sample(t=now - self._t0, submitted=stats["total_tasks"],
                   completed=stats["completed_tasks"], failed=stats["failed_tasks"],
                   retried=stats["retried_tasks"], queue=queue, in_flight=stats["in_flight"],
                   limit=self._limit(stats), rate_limited=self.rate_limited,
                   latency=self._latency(now), stats=stats)
        self.samples.append(s)
        return s

    def _limit(self, stats: dict[str, Any]) -> int | None:
        if callable(self.limit):
            return self.limit()
        if self.limit is not None:
            return self.limit
        # every worker pool of the namespace (other processes' too), or this processor's
        return int(stats["worker_slots"] or stats["worker_count"]) or None

    def _latency(self, now: float) -> dict[str, dict[str, float | None]]:
        out = {}
        for group, series in zip(LATENCY_GROUPS, (self._waits, self._processing), strict=True):
            while series and series[0][0] < now - self.window_s:
                series.popleft()
            out[group] = summary([v for _, v in series])
        return out

    # -- frames ------------------------------------------------------------------------------
    def frame(self, title: str = "chatroom_async: live") -> Frame:
        """The samples so far as a frame (rates are per interval between two samples)."""
        s = list(self.samples)
        rate = _rates(s)
        last = s[-1] if s else None
        subtitle = "" if last is None else (
            f"t={last.t:.0f} s · completed {last.completed} · failed {last.failed} · "
            f"queued {sum(last.queue.values())} · in flight {last.in_flight}"
            + (f"/{last.limit}" if last.limit else "") + f" · 429s {last.rate_limited}")
        return Frame(
            title=title, subtitle=subtitle, t=[x.t for x in s],
            completed_per_s=rate(lambda x: x.completed),
            submitted_per_s=rate(lambda x: x.submitted),
            queue={band: [x.queue[band] for x in s] for band in QUEUE_BANDS},
            in_flight=[x.in_flight for x in s],
            limit=[float(x.limit or 0) for x in s] if s and all(x.limit for x in s) else [],
            latency_series={f"{g} {p}": [x.latency[g][p] for x in s]
                            for g in LATENCY_GROUPS for p in PERCENTILES},
            latency=last.latency if last else {},
            retries_by_kind=dict(sorted(self.retries_by_kind.items())),
            failures_by_kind=dict(sorted(self.failures_by_kind.items())),
            rate_limited_per_s=rate(lambda x: x.rate_limited))


def _rates(samples: list[Sample]) -> Callable[[Callable[[Sample], int]], list[float]]:
    """A function giving a counter's rate per interval (0 at the first sample)."""
    def rate(value: Callable[[Sample], int]) -> list[float]:
        out = [0.0] if samples else []
        for a, b in zip(samples, samples[1:], strict=False):
            dt = b.t - a.t
            out.append((value(b) - value(a)) / dt if dt > 0 else 0.0)
        return out
    return rate
