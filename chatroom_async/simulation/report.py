"""The simulator's report: what one run measured, as numbers, JSON and a short text table.

Owns `TaskTrace` and `RunRecord` (the raw facts a run collects from the processor's
events) and `SimulationReport` (the figures computed from them). Pure arithmetic over
virtual timestamps; it never runs anything, and the wall time of a run is kept out of
`to_dict()` so that two runs with the same seed compare equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..metrics import summarize
from ..task import TaskPriority

#: Candidate sample intervals (s) for the time series; the first giving <= 200 points wins.
_NICE_STEPS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0,
               900.0, 1800.0, 3600.0)
_MAX_POINTS = 200
_PRIORITY_ORDER = [p.name.lower() for p in sorted(TaskPriority, reverse=True)]


@dataclass(slots=True)
class TaskTrace:
    """What happened to one task, in seconds of virtual time since the run began."""

    arrival: float
    priority: str
    first_start: float | None = None
    attempt_start: float | None = None
    running: bool = False
    finished: float | None = None
    outcome: str | None = None  # "completed" | "failed" | "cancelled"
    error_type: str | None = None
    retries: int = 0
    ttft: float | None = None  # the backend's time to first token, successful attempt


@dataclass(slots=True)
class RunRecord:
    """Everything a run collected: traces, the queue/in-flight step function, attempts."""

    traces: dict[str, TaskTrace] = field(default_factory=dict)
    step_t: list[float] = field(default_factory=list)
    step_queue: list[int] = field(default_factory=list)
    step_in_flight: list[int] = field(default_factory=list)
    attempt_s: list[float] = field(default_factory=list)
    retries_by_type: dict[str, int] = field(default_factory=dict)
    end: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulationReport:
    """The figures of one simulated run. Times are seconds of simulated time.

    Attributes:
        config: the run's settings, with the arrival rate actually used.
        totals: submitted, completed, failed, cancelled, unfinished, retries, attempts.
        failures_by_type: failed tasks by the error type of their last attempt.
        retries_by_type: retries by the error type that caused them.
        duration_s: from the first arrival to the last task's end.
        throughput: completed per second overall, in the steady middle of the run (between
            the 10th and 90th percentile completion), and the offered arrival rate.
        latency: submit-to-completion summaries, overall and by priority name.
        queue_wait: submit to first start.
        service_time: the duration of every attempt (what holds a worker).
        ttft: the backend's time to first token of successful calls, and end to end
            (submit to the first token of the attempt that succeeded).
        goodput: completed tasks with latency <= the target: count, fraction, per second.
        occupancy: time averages and maxima of queue depth and tasks in flight.
        series: per sample interval: end time `t`, `completed_per_s`, and the time-averaged
            `queue_depth` (waiting: queued or awaiting a retry) and `in_flight`.
        backend: the simulated backend's counters.
        processor: the processor's shared counters at the end.
        wall_time_s: real seconds the run took; not part of `to_dict()` nor of equality.
    """

    config: dict[str, Any]
    totals: dict[str, int]
    failures_by_type: dict[str, int]
    retries_by_type: dict[str, int]
    duration_s: float
    throughput: dict[str, float | None]
    latency: dict[str, Any]
    queue_wait: dict[str, Any]
    service_time: dict[str, Any]
    ttft: dict[str, Any]
    goodput: dict[str, Any]
    occupancy: dict[str, float]
    series: dict[str, list[float]]
    backend: dict[str, Any]
    processor: dict[str, Any]
    wall_time_s: float = field(default=0.0, compare=False)

    def to_dict(self, *, include_wall_time: bool = False) -> dict[str, Any]:
        """The report as JSON-safe plain data, keys in a fixed order.

        Args:
            include_wall_time: add a "run" section with the wall time (it differs between
                identical runs, so it is left out by default).
        """
        names = ("config", "totals", "failures_by_type", "retries_by_type", "duration_s",
                 "throughput", "latency", "queue_wait", "service_time", "ttft", "goodput",
                 "occupancy", "series", "backend", "processor")
        data = {name: _plain(getattr(self, name)) for name in names}
        if include_wall_time:
            speed = self.duration_s / self.wall_time_s if self.wall_time_s > 0 else None
            data["run"] = {"wall_time_s": self.wall_time_s, "simulated_per_wall_s": speed}
        return data

    def summary(self) -> str:
        """A short text table of the headline figures."""
        return "\n".join(_summary_lines(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# -- building -------------------------------------------------------------------------------
def build_report(record: RunRecord, *, config: dict[str, Any], latency_target_s: float,
                 sample_interval_s: float | None, backend: dict[str, Any],
                 processor: dict[str, Any]) -> SimulationReport:
    """Compute every figure of the report from what the run recorded."""
    traces = list(record.traces.values())
    done = [t for t in traces if t.outcome == "completed"]
    latencies = [t.finished - t.arrival for t in done]  # type: ignore[operator]
    duration = max([record.end] + [t.finished for t in traces if t.finished is not None])
    good = sum(1 for v in latencies if v <= latency_target_s)
    step = sample_interval_s or _auto_step(duration)
    return SimulationReport(
        config=config,
        totals=_totals(traces, record),
        failures_by_type=_count_by(t.error_type or "unknown" for t in traces
                                   if t.outcome == "failed"),
        retries_by_type=dict(sorted(record.retries_by_type.items())),
        duration_s=duration,
        throughput=_throughput(sorted(t.finished for t in done), duration,  # type: ignore[misc]
                               config.get("rate")),
        latency={"overall": summarize(latencies).as_dict(), "by_priority": _by_priority(done)},
        queue_wait=summarize([t.first_start - t.arrival for t in traces
                              if t.first_start is not None]).as_dict(),
        service_time=summarize(record.attempt_s).as_dict(),
        ttft=_ttft(done),
        goodput={"target_s": latency_target_s, "count": good,
                 "fraction": good / len(traces) if traces else None,
                 "per_s": good / duration if duration > 0 else None},
        occupancy=_occupancy(record, duration),
        series=_series(record, [t.finished for t in done], duration, step),  # type: ignore[misc]
        backend=backend, processor=processor)


def _totals(traces: list[TaskTrace], record: RunRecord) -> dict[str, int]:
    outcomes = _count_by(t.outcome or "unfinished" for t in traces)
    return {"submitted": len(traces), "completed": outcomes.get("completed", 0),
            "failed": outcomes.get("failed", 0), "cancelled": outcomes.get("cancelled", 0),
            "unfinished": outcomes.get("unfinished", 0),
            "retries": sum(t.retries for t in traces), "attempts": len(record.attempt_s)}


def _count_by(keys: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def _throughput(finish: list[float], duration: float,
                offered: float | None) -> dict[str, float | None]:
    steady = None
    if len(finish) >= 10:
        lo, hi = int(0.1 * (len(finish) - 1)), math.ceil(0.9 * (len(finish) - 1))
        if finish[hi] > finish[lo]:
            steady = (hi - lo) / (finish[hi] - finish[lo])
    return {"overall_per_s": len(finish) / duration if duration > 0 else None,
            "steady_per_s": steady, "offered_per_s": offered}


def _by_priority(done: list[TaskTrace]) -> dict[str, Any]:
    groups: dict[str, list[float]] = {}
    for t in done:
        groups.setdefault(t.priority, []).append(t.finished - t.arrival)  # type: ignore[operator]
    return {name: summarize(groups[name]).as_dict() for name in _PRIORITY_ORDER
            if name in groups}


def _ttft(done: list[TaskTrace]) -> dict[str, Any]:
    timed = [t for t in done if t.ttft is not None]
    return {"backend": summarize([t.ttft for t in timed]).as_dict(),  # type: ignore[misc]
            "end_to_end": summarize([t.attempt_start - t.arrival + t.ttft  # type: ignore[operator]
                                     for t in timed]).as_dict()}


def _auto_step(duration: float) -> float:
    for step in _NICE_STEPS:
        if duration / step <= _MAX_POINTS:
            return step
    return math.ceil(duration / _MAX_POINTS / 3600.0) * 3600.0


def _occupancy(record: RunRecord, duration: float) -> dict[str, float]:
    q = _interval_means(record.step_t, record.step_queue, duration, duration)
    f = _interval_means(record.step_t, record.step_in_flight, duration, duration)
    return {"mean_queue_depth": q[0] if q else 0.0, "max_queue_depth": max(record.step_queue,
                                                                           default=0),
            "mean_in_flight": f[0] if f else 0.0, "max_in_flight": max(record.step_in_flight,
                                                                       default=0)}


def _series(record: RunRecord, finish: list[float], duration: float,
            step: float) -> dict[str, list[float]]:
    points = max(1, math.ceil(duration / step - 1e-9))
    completed = [0] * points
    for t in finish:
        completed[min(points - 1, int(t / step))] += 1
    return {"t": [(k + 1) * step for k in range(points)],
            "completed_per_s": [n / step for n in completed],
            "queue_depth": _interval_means(record.step_t, record.step_queue, step, duration),
            "in_flight": _interval_means(record.step_t, record.step_in_flight, step, duration)}


def _interval_means(times: list[float], values: list[int], step: float,
                    duration: float) -> list[float]:
    """Time averages of a step function (0 before its first step) over [k*step, (k+1)*step)."""
    if duration <= 0:
        return []
    points = max(1, math.ceil(duration / step - 1e-9))
    sums = [0.0] * points
    for t, end, v in zip(times, times[1:] + [points * step], values, strict=True):
        k = min(points - 1, int(t / step))
        while v and t < end:  # spread v over the intervals [t, end) touches
            upto = end if k >= points - 1 else min(end, (k + 1) * step)
            sums[k] += v * (upto - t)
            t, k = upto, k + 1
    return [s / step for s in sums]


# -- text -----------------------------------------------------------------------------------
def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:.3g}{unit}" if abs(value) < 100 else f"{value:,.0f}{unit}"


def _summary_lines(r: SimulationReport) -> list[str]:
    c, t, lat = r.config, r.totals, r.latency["overall"]
    speed = (f" in {r.wall_time_s:.2f} s of wall time ({r.duration_s / r.wall_time_s:,.0f}x)"
             if r.wall_time_s > 0 else "")
    lines = [(f"simulated {c.get('tasks')} tasks, {c.get('concurrency')} workers, "
              f"{c.get('arrival')} arrivals at {_fmt(c.get('rate'))}/s, seed {c.get('seed')}"),
             f"  duration      {_fmt(r.duration_s, ' s')} simulated{speed}",
             (f"  tasks         completed {t['completed']}, failed {t['failed']}, cancelled "
              f"{t['cancelled']}, unfinished {t['unfinished']}; retries {t['retries']}")]
    for label, counts in (("failures", r.failures_by_type), ("retried on", r.retries_by_type)):
        if counts:
            lines.append(f"  {label:<13} " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    tp, g, o = r.throughput, r.goodput, r.occupancy
    share = None if g["fraction"] is None else 100 * g["fraction"]
    lines += [(f"  throughput    {_fmt(tp['overall_per_s'])}/s overall, "
               f"{_fmt(tp['steady_per_s'])}/s steady (offered {_fmt(tp['offered_per_s'])}/s)"),
              "  latency (s)   " + _pcts(lat)]
    lines += [f"    {name:<11} " + _pcts(s) for name, s in r.latency["by_priority"].items()]
    lines += [f"  ttft (s)      backend {_pcts(r.ttft['backend'])}",
              f"                end to end {_pcts(r.ttft['end_to_end'])}",
              (f"  goodput       {g['count']} tasks within {_fmt(g['target_s'], ' s')} "
               f"({_fmt(share, '%')}), {_fmt(g['per_s'])}/s"),
              (f"  queue         mean {_fmt(o['mean_queue_depth'])}, max "
               f"{o['max_queue_depth']}; in flight mean {_fmt(o['mean_in_flight'])}, "
               f"max {o['max_in_flight']}")]
    return lines


def _pcts(s: dict[str, Any]) -> str:
    return f"p50 {_fmt(s['p50'])}  p95 {_fmt(s['p95'])}  p99 {_fmt(s['p99'])}  (n={s['count']})"
