"""The virtual-time simulator: one call runs the real `AsyncAIProcessor` on fakeredis with
the simulated backend, feeds it a seeded arrival process, and returns a `SimulationReport`.

Owns `SimulationConfig`, `simulate` / `simulate_async` and the `simulate` CLI command. It
only builds and drives a run: the processor, the backend, the arrival processes
(`chatroom_async.arrivals`), the event recorder (`chatroom_async.recorder`) and the
figures (`chatroom_async.report`) live elsewhere. Determinism comes from the virtual-time
loop (`chatroom_async.vtime`), seeded generators and fixed task ids; nothing reads the wall
clock but the wall-time figure.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..clock import LoopClock
from ..errors import ProcessorError
from ..processor import AsyncAIProcessor
from ..settings import ProcessorSettings
from ..simulated.backend import PROFILES, SimSettings, SimulatedAIBackend
from ..task import TaskPriority
from ..validation import REQUIRED_FIELDS
from .arrivals import (
    ARRIVAL_KINDS,
    DEFAULT_PRIORITY_MIX,
    DEFAULT_REQUEST_MIX,
    Arrival,
    check_mix,
    plan_arrivals,
)
from .recorder import Collector
from .report import RunRecord, SimulationReport, build_report
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
        mean = self.sim_settings().estimated_latency_s()
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


# -- running --------------------------------------------------------------------------------
def simulate(config: SimulationConfig | None = None, **changes: Any) -> SimulationReport:
    """Run a simulation now, in this thread, and return its report (shell and scripts).

    Args:
        config: the run (default `SimulationConfig()`).
        **changes: `SimulationConfig` fields replacing those of `config`.

    Raises:
        ProcessorError: called inside a running event loop; there (a Jupyter cell, an async
            function) use `await simulate_async(config)`.
        ValueError: an invalid setting.
    """
    config = dataclasses.replace(config or SimulationConfig(), **changes)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise ProcessorError("simulate() cannot run inside a running event loop (a Jupyter "
                             "cell, an async function): use `await simulate_async(config)`")
    started = time.perf_counter()
    report = run_virtual(lambda: _run(config))
    return dataclasses.replace(report, wall_time_s=time.perf_counter() - started)


async def simulate_async(config: SimulationConfig | None = None,
                         **changes: Any) -> SimulationReport:
    """`simulate` for a running loop (a Jupyter cell): runs on a worker thread's own virtual
    loop, leaving the caller's loop free. Same arguments, same report."""
    config = dataclasses.replace(config or SimulationConfig(), **changes)
    started = time.perf_counter()
    report = await run_virtual_async(lambda: _run(config))
    return dataclasses.replace(report, wall_time_s=time.perf_counter() - started)


async def _run(config: SimulationConfig) -> SimulationReport:
    """The whole run, on the virtual loop: build, feed, wait, measure, stop."""
    plan = plan_arrivals(tasks=config.tasks, arrival=config.arrival,
                         rate=config.effective_rate(), burstiness=config.burstiness,
                         request_mix=config.request_mix, priority_mix=config.priority_mix,
                         users=config.users, seed=config.seed)
    record = RunRecord()
    collector = Collector(record, len(plan))
    clock = LoopClock(SIM_EPOCH)
    backend = SimulatedAIBackend(config.sim_settings(), seed=config.seed, clock=clock,
                                 on_first_token=collector.on_first_token)
    processor = AsyncAIProcessor(max_workers=config.concurrency, backend=backend, clock=clock,
                                 seed=config.seed, settings=config.settings)
    collector.attach(processor)
    await processor.start()
    try:
        await _drive(processor, plan, collector, config)
        record.end = asyncio.get_running_loop().time()
        stats = await processor.get_stats()
    finally:
        await processor.stop(drain_timeout_s=0.0)
    return build_report(record, config=config.as_dict(),
                        latency_target_s=config.latency_target_s,
                        sample_interval_s=config.sample_interval_s,
                        backend=_backend_stats(backend), processor=_processor_stats(stats))


async def _drive(processor: AsyncAIProcessor, plan: list[Arrival], collector: Collector,
                 config: SimulationConfig) -> None:
    """Feed the plan; return once every task has finished, or at the horizon."""
    loop = asyncio.get_running_loop()
    # By default a week past the last arrival: far beyond any timeout and retry budget.
    horizon = config.horizon_s if config.horizon_s is not None else plan[-1].at + 7 * 86_400.0
    feeder = asyncio.create_task(_feed(processor, plan, collector, config))
    finished = asyncio.create_task(collector.all_done.wait())
    try:
        await asyncio.wait({feeder, finished}, timeout=horizon,
                           return_when=asyncio.FIRST_COMPLETED)
        if feeder.done() and not feeder.cancelled() and feeder.exception() is not None:
            raise feeder.exception()  # type: ignore[misc]  # a submit failed: a bug, not data
        if not finished.done():
            await asyncio.wait({finished}, timeout=max(0.0, horizon - loop.time()))
    finally:
        for job in (feeder, finished):
            job.cancel()
        await asyncio.gather(feeder, finished, return_exceptions=True)


async def _feed(processor: AsyncAIProcessor, plan: list[Arrival], collector: Collector,
                config: SimulationConfig) -> None:
    loop = asyncio.get_running_loop()
    for a in plan:
        if a.at > loop.time():
            await asyncio.sleep(a.at - loop.time())
        collector.arrived(a.task_id, a.priority)
        await processor.submit_task(a.user_id, a.request_type, a.request_data, a.priority,
                                    config.timeout_s, max_retries=config.max_retries,
                                    task_id=a.task_id)


def _backend_stats(backend: SimulatedAIBackend) -> dict[str, Any]:
    stats = dataclasses.asdict(backend.stats())
    stats["errors"] = dict(sorted(stats["errors"].items()))
    return stats


_PROCESSOR_KEYS = ("total_tasks", "completed_tasks", "failed_tasks", "cancelled_tasks",
                   "retried_tasks", "reclaimed_tasks", "dead_lettered",
                   "average_processing_time")


def _processor_stats(stats: Mapping[str, Any]) -> dict[str, Any]:
    return {key: stats[key] for key in _PROCESSOR_KEYS}


# -- command line ---------------------------------------------------------------------------
def add_simulate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `simulate` command to an argparse subparsers object; returns its parser.

    The parser's default `handler` is `run_simulate_command`.
    """
    p = subparsers.add_parser(
        "simulate", help="run the processor on simulated traffic in virtual time",
        description="Run the real processor with the simulated AI backend on an embedded "
                    "fakeredis in virtual time, and print a report. The same seed gives "
                    "the same report.")
    p.add_argument("--tasks", type=int, default=1000, help="tasks to submit (default 1000)")
    p.add_argument("--concurrency", type=int, default=10, help="workers (default 10)")
    p.add_argument("--failure-rate", type=float, default=None,
                   help="the backend's random fault rate per attempt, 0-1 (default: the "
                        "profile's own rates)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--rate", type=float, default=None,
                   help="arrivals per second (default: 10%% above the estimated capacity)")
    p.add_argument("--arrival", choices=ARRIVAL_KINDS, default="poisson",
                   help="arrival process (default poisson)")
    p.add_argument("--profile", choices=tuple(PROFILES), default="realistic",
                   help="the backend profile (default realistic)")
    p.add_argument("--timeout", type=float, default=30.0, help="task timeout, s (default 30)")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.set_defaults(handler=run_simulate_command)
    return p  # type: ignore[no-any-return]


def config_from_args(args: argparse.Namespace) -> SimulationConfig | None:
    """The `simulate` command's config, or None after one line on stderr for a bad one."""
    try:
        return SimulationConfig(tasks=args.tasks, concurrency=args.concurrency,
                                failure_rate=args.failure_rate, seed=args.seed,
                                rate=args.rate, arrival=args.arrival, profile=args.profile,
                                timeout_s=args.timeout)
    except (TypeError, ValueError) as exc:
        print(f"chatroom-async simulate: {exc}", file=sys.stderr)
        return None


def run_simulate_command(args: argparse.Namespace) -> int:
    """Run `simulate` with parsed arguments; print the summary (or JSON). Returns 0, or 2
    for invalid settings."""
    config = config_from_args(args)
    if config is None:
        return 2
    report = simulate(config)
    if args.json:
        print(json.dumps(report.to_dict(include_wall_time=True), ensure_ascii=False, indent=1))
    else:
        print(report.summary())
    return 0
