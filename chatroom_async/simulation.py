"""The virtual-time simulator: one call runs the real `AsyncAIProcessor` on fakeredis with
the simulated backend, feeds it a seeded arrival process, and returns a `SimulationReport`.

Owns `SimulationConfig`, `simulate` / `simulate_async`, the event collector and the
`simulate` CLI command. It only drives and observes: the processor, the backend, the
arrival processes (`chatroom_async.arrivals`) and the figures (`chatroom_async.report`)
live elsewhere. Determinism comes from the virtual-time loop (`chatroom_async.vtime`),
seeded generators and fixed task ids; nothing reads the wall clock but the wall-time figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import dataclasses
import json
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .arrivals import (ARRIVAL_KINDS, DEFAULT_PRIORITY_MIX, DEFAULT_REQUEST_MIX, check_mix,
                       plan_arrivals)
from .backend import AIRequest
from .clock import LoopClock
from .errors import ProcessorError
from .processor import AsyncAIProcessor
from .report import RunRecord, SimulationReport, TaskTrace, build_report
from .settings import ProcessorSettings
from .simulated import PROFILES, SimSettings, SimulatedAIBackend
from .task import AITask, TaskPriority
from .validation import REQUIRED_FIELDS
from .vtime import run_virtual, run_virtual_async

#: What `clock.now()` reads at the start of a run (2026-01-01T00:00:00Z): records look real.
SIM_EPOCH = 1_767_225_600.0

#: Backend settings the simulator applies on top of the profile, before `backend` overrides:
#: no provider concurrency cap and a soft capacity far above any worker count, so that by
#: default `concurrency` measures the processor rather than the provider's free tier.
BACKEND_DEFAULTS: Mapping[str, Any] = {"max_concurrency": None, "soft_capacity": 1000.0}

_RATE_HEADROOM = 1.1  # the default rate: 10% above the estimated capacity


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulationConfig:
    """One simulated run. Durations are seconds of simulated time.

    Attributes:
        tasks: how many tasks arrive.
        concurrency: the processor's `max_workers`.
        arrival: "constant", "poisson" or "bursty" (see `chatroom_async.arrivals`).
        rate: arrivals per second; None means 10% above the estimated capacity
            (concurrency / the backend's mean latency), i.e. just saturated.
        burstiness: mean burst size of "bursty" arrivals.
        request_mix, priority_mix: weights by request type / lowercase priority name.
        users: user ids are drawn uniformly from 1..users.
        profile: the backend's base settings, a name of `simulated.PROFILES`.
        backend: `SimSettings` fields overriding the profile (after `BACKEND_DEFAULTS`).
        failure_rate: the backend's total random fault rate per attempt (its
            `failure_rate` knob); None keeps the profile's per-kind rates.
        timeout_s: every task's timeout.
        max_retries: every task's retry budget.
        latency_target_s: goodput counts completed tasks at most this late.
        sample_interval_s: the time series' step; None picks one giving <= 200 points.
        horizon_s: stop after this much simulated time even if tasks are unfinished.
        settings: the processor's settings; default: no streaming, no pub/sub (both cost
            time and change nothing a report shows; callbacks still fire in-process).
        seed: seeds the arrivals, the backend and the processor.
    """

    tasks: int = 1000
    concurrency: int = 10
    arrival: str = "poisson"
    rate: float | None = None
    burstiness: float = 5.0
    request_mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_REQUEST_MIX))
    priority_mix: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_PRIORITY_MIX))
    users: int = 100
    profile: str = "realistic"
    backend: Mapping[str, Any] = field(default_factory=dict)
    failure_rate: float | None = None
    timeout_s: float = 30.0
    max_retries: int = 3
    latency_target_s: float = 10.0
    sample_interval_s: float | None = None
    horizon_s: float | None = None
    settings: ProcessorSettings = field(
        default_factory=lambda: ProcessorSettings(stream=False, publish_events=False))
    seed: int = 0

    def __post_init__(self) -> None:
        _check(_is_int(self.tasks) and self.tasks >= 1, "tasks must be an int >= 1")
        _check(_is_int(self.concurrency) and self.concurrency >= 1,
               "concurrency must be an int >= 1")
        _check(self.arrival in ARRIVAL_KINDS, f"arrival must be one of {ARRIVAL_KINDS}")
        _check(self.rate is None or _positive(self.rate), "rate must be > 0 or None")
        _check(_positive(self.burstiness) and self.burstiness >= 1, "burstiness must be >= 1")
        check_mix("request_mix", self.request_mix, tuple(REQUIRED_FIELDS))
        check_mix("priority_mix", self.priority_mix, tuple(p.name.lower() for p in TaskPriority))
        _check(_is_int(self.users) and self.users >= 1, "users must be an int >= 1")
        _check(self.profile in PROFILES, f"profile must be one of {tuple(PROFILES)}")
        _check(self.failure_rate is None or 0.0 <= self.failure_rate <= 1.0,
               "failure_rate must be in [0, 1] or None")
        _check(_positive(self.timeout_s) and _positive(self.latency_target_s),
               "timeout_s and latency_target_s must be > 0")
        _check(_is_int(self.max_retries) and self.max_retries >= 0, "max_retries must be >= 0")
        for name in ("sample_interval_s", "horizon_s"):
            _check(getattr(self, name) is None or _positive(getattr(self, name)),
                   f"{name} must be > 0 or None")
        _check(_is_int(self.seed), "seed must be an int")
        self.sim_settings()  # unknown or out-of-range backend settings fail here

    def sim_settings(self) -> SimSettings:
        """The simulated backend's settings: profile, `BACKEND_DEFAULTS`, overrides."""
        changes = {**BACKEND_DEFAULTS, **self.backend}
        if self.failure_rate is not None:
            changes["failure_rate"] = self.failure_rate
        return dataclasses.replace(PROFILES[self.profile], **changes)

    def effective_rate(self) -> float:
        """`rate`, or 10% above the estimated capacity when it is None."""
        if self.rate is not None:
            return float(self.rate)
        mean = estimated_latency_s(self.sim_settings())
        return _RATE_HEADROOM * self.concurrency / mean if mean > 0 else 100.0 * self.concurrency

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe settings, with the arrival rate actually used."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["rate"] = self.effective_rate()
        data["request_mix"], data["priority_mix"] = dict(self.request_mix), dict(self.priority_mix)
        data["backend"] = dict(self.backend)
        data["settings"] = dataclasses.asdict(self.settings)
        return data


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)


def estimated_latency_s(s: SimSettings) -> float:
    """The mean latency of one unloaded call of a short prompt, from the settings alone.

    Lognormal means (median * exp(sigma^2 / 2)) of the TTFT and of the decode time of
    `output_tokens` tokens; ignores the max_tokens cap, load and faults.
    """
    if not s.simulate_latency:
        return 0.0
    ttft_sigma = math.log(s.ttft_p99_s / s.ttft_p50_s) / 2.326
    ttft = s.ttft_p50_s * math.exp(ttft_sigma ** 2 / 2)
    tokens = s.output_tokens_p50 * math.exp(s.output_tokens_sigma ** 2 / 2)
    per_token = math.exp(s.output_tps_sigma ** 2 / 2) / s.output_tps_p50
    return ttft + max(0.0, tokens - 1) * per_token


# -- observing ------------------------------------------------------------------------------
_CALL: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar(
    "chatroom_async_sim_call", default=None)


class _ProbeClock(LoopClock):
    """The backend's clock; notes the first wait of each call, which is its TTFT.

    Interim: SimulatedAIBackend has no per-call TTFT hook yet. A call sleeps its TTFT first
    (a hang sleeps too, but a hung call never succeeds, and only successes are kept).
    """

    async def sleep(self, seconds: float) -> None:
        box = _CALL.get()
        if box is not None and not box:
            box.append(max(0.0, seconds))
        await asyncio.sleep(max(0.0, seconds))


class _ProbedBackend:
    """Wraps the simulated backend to record each successful call's TTFT by task id."""

    def __init__(self, inner: SimulatedAIBackend, record: RunRecord) -> None:
        self.inner, self.record = inner, record

    async def complete(self, request: AIRequest) -> dict[str, Any]:
        box: list[float] = []
        token = _CALL.set(box)
        try:
            result = await self.inner.complete(request)
        finally:
            _CALL.reset(token)
        trace = self.record.traces.get(request.task_id)
        if trace is not None:
            trace.ttft = box[0] if box else 0.0
        return result


class _Collector:
    """Turns the processor's events into traces and the queue/in-flight step function."""

    def __init__(self, record: RunRecord, expected: int) -> None:
        self.record, self.expected = record, expected
        self.loop = asyncio.get_running_loop()
        self.submitted = self.in_flight = self.finished = 0
        self.all_done = asyncio.Event()

    def attach(self, processor: AsyncAIProcessor) -> None:
        for event in ("task_started", "task_completed", "task_failed", "task_retrying",
                      "task_cancelled"):
            processor.add_callback(event, getattr(self, "on_" + event[5:]))

    def arrived(self, task_id: str, at: float, priority: TaskPriority) -> None:
        self.record.traces[task_id] = TaskTrace(at, priority.name.lower())
        self.submitted += 1
        self._step()

    def _step(self) -> None:
        r = self.record
        r.step_t.append(self.loop.time())
        r.step_queue.append(self.submitted - self.finished - self.in_flight)
        r.step_in_flight.append(self.in_flight)

    def on_started(self, task: AITask) -> None:
        trace = self.record.traces[task.task_id]
        now = self.loop.time()
        if trace.first_start is None:
            trace.first_start = now
        trace.attempt_start = now
        if not trace.running:  # a reclaimed task starts again without an end event
            trace.running = True
            self.in_flight += 1
        self._step()

    def _attempt_over(self, trace: TaskTrace, now: float) -> None:
        if trace.running:
            trace.running = False
            self.in_flight -= 1
            self.record.attempt_s.append(now - (trace.attempt_start or now))

    def on_retrying(self, task: AITask) -> None:
        trace = self.record.traces[task.task_id]
        self._attempt_over(trace, self.loop.time())
        trace.retries += 1
        kind = task.error_type or "unknown"
        self.record.retries_by_type[kind] = self.record.retries_by_type.get(kind, 0) + 1
        self._step()

    def _end(self, task: AITask, outcome: str) -> None:
        trace = self.record.traces[task.task_id]
        if trace.outcome is not None:
            return
        now = self.loop.time()
        self._attempt_over(trace, now)
        trace.finished, trace.outcome = now, outcome
        if outcome == "completed":
            trace.error_type = None
        else:
            trace.error_type = task.error_type or "unknown"
            trace.ttft = None
        self.finished += 1
        self._step()
        if self.finished >= self.expected:
            self.all_done.set()

    def on_completed(self, task: AITask) -> None:
        self._end(task, "completed")

    def on_failed(self, task: AITask) -> None:
        self._end(task, "failed")

    def on_cancelled(self, task: AITask) -> None:
        self._end(task, "cancelled")
