"""Seeded workloads for the scheduling checks, and a runner that plays one through the real
processor with the simulated backend in virtual time and records when each task started
and finished.

Public API only. Times are loop seconds from the start of the run; the processor's clock
reads 0 when a run starts, so a task's `created_at` is its arrival time.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chatroom_async import (
    AIBackend,
    AIRequest,
    AITask,
    AsyncAIProcessor,
    LoopClock,
    ProcessorSettings,
    Scheduler,
    SimulatedAIBackend,
    TaskPriority,
)

#: The simulated provider of the scheduling checks: realistic latency, no random faults,
#: no slowdown under load; `max_concurrency` is set per check.
QUIET = {"failure_rate": 0.0, "soft_capacity": 1000.0, "max_concurrency": None}
TIERS = ("vip", "standard", "free")


@dataclass(frozen=True, slots=True)
class Job:
    """One request of a workload: when it arrives and what it asks."""

    at: float
    task_id: str
    user_id: int
    priority: TaskPriority = TaskPriority.NORMAL
    request_type: str = "chat_completion"
    request_data: Mapping[str, Any] = field(default_factory=lambda: {"message": "你好"})
    depends_on: tuple[str, ...] = ()

    def request(self) -> dict[str, Any]:
        """The keyword arguments of `submit_task` for this job."""
        return {"user_id": self.user_id, "request_type": self.request_type,
                "request_data": dict(self.request_data), "priority": self.priority,
                "timeout": 120.0, "max_retries": 5, "task_id": self.task_id}


@dataclass
class Trace:
    """What a run recorded (loop seconds)."""

    jobs: dict[str, Job]
    started: dict[str, float] = field(default_factory=dict)  # first start
    finished: dict[str, tuple[str, float]] = field(default_factory=dict)  # status, time
    backend: AIBackend | None = None

    def waits(self, which: Callable[[Job], bool] = lambda j: True) -> list[float]:
        return [self.started[t] - j.at for t, j in self.jobs.items() if which(j)
                and t in self.started]

    def latencies(self) -> list[float]:
        return [end - self.jobs[t].at for t, (status, end) in self.finished.items()
                if status == "completed"]


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


class FifoScheduler:
    """First come, first served: the baseline of the VIP check."""

    def score(self, task: AITask, user_context: Mapping[str, Any]) -> float:
        return task.created_at


class TierContext:
    """`user_context` of the workloads: users 1..vip are "vip", up to standard "standard",
    the rest "free"; `recent_requests` is a seeded count of the user's last hour."""

    def __init__(self, *, vip: int = 5, standard: int = 30, seed: int = 0) -> None:
        self.vip, self.standard = vip, standard
        self.rng = random.Random(seed)
        self.recent: dict[int, int] = {}

    def tier(self, user_id: int) -> str:
        return "vip" if user_id <= self.vip else "standard" if user_id <= self.standard \
            else "free"

    def __call__(self, user_id: int) -> dict[str, Any]:
        recent = self.recent.setdefault(user_id, self.rng.randint(0, 40))
        return {"tier": self.tier(user_id), "recent_requests": recent}


def poisson(rng: random.Random, rate: float, start: float, count: int) -> list[float]:
    """`count` Poisson arrival times from `start`."""
    times, t = [], start
    for _ in range(count):
        t += rng.expovariate(rate)
        times.append(t)
    return times


def simulated(seed: int, **settings: Any) -> SimulatedAIBackend:
    return SimulatedAIBackend(seed=seed, clock=LoopClock(0.0), **{**QUIET, **settings})


Submit = Callable[[AsyncAIProcessor, Job], Awaitable[Any]]


async def run_jobs(jobs: Sequence[Job], *, backend: AIBackend, workers: int,
                   scheduler: Scheduler | None = None,
                   user_context: Callable[[int], Mapping[str, Any]] | None = None,
                   submit: Submit | None = None, expect: int | None = None,
                   settle_s: float = 0.0, horizon_s: float = 3600.0) -> Trace:
    """Play `jobs` through a processor; return once `expect` tasks (default all) finished
    and `settle_s` more seconds passed, or at `horizon_s`."""
    trace = Trace({j.task_id: j for j in jobs}, backend=backend)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    clock = LoopClock(-t0)  # this run's time: 0 when it starts
    done = asyncio.Event()
    expect = len(jobs) if expect is None else expect

    def started(task: AITask) -> None:
        trace.started.setdefault(task.task_id, clock.now())

    def ended(task: AITask) -> None:
        trace.finished[task.task_id] = (task.status.value, clock.now())
        if len(trace.finished) >= expect:
            done.set()

    p = AsyncAIProcessor(max_workers=workers, backend=backend, clock=clock, seed=3,
                         scheduler=scheduler, user_context=user_context,
                         settings=ProcessorSettings(publish_events=False, stream=False,
                                                    lease_s=600.0))
    p.add_callback("task_started", started)
    for event in ("task_completed", "task_failed", "task_cancelled"):
        p.add_callback(event, ended)
    async with p:
        for job in sorted(jobs, key=lambda j: j.at):
            if job.at > clock.now():
                await asyncio.sleep(job.at - clock.now())
            if submit is not None:
                await submit(p, job)
            else:
                await p.submit_task(**job.request())
        try:
            async with asyncio.timeout(max(0.0, horizon_s - clock.now())):
                await done.wait()
                await asyncio.sleep(settle_s)
        except TimeoutError:
            pass
        await p.stop(drain_timeout_s=0)
    return trace


class BatchingSimBackend:
    """The simulated provider with a batch endpoint: `complete_batch` answers several
    summaries in one call (one admission, one prompt of all the contents)."""

    def __init__(self, inner: SimulatedAIBackend) -> None:
        self.inner = inner
        self.batches: list[int] = []

    async def complete(self, request: AIRequest) -> dict[str, Any]:
        return await self.inner.complete(request)

    async def complete_batch(self, requests: Sequence[AIRequest]) -> list[dict[str, Any]]:
        if not requests:
            raise ValueError("complete_batch needs at least one request")
        self.batches.append(len(requests))
        first = requests[0]
        content = "\n".join(f"[{i}] {r.request_data.get('content', '')}"
                            for i, r in enumerate(requests))
        merged = AIRequest(f"batch-{first.task_id}", first.attempt, first.user_id,
                           "content_summary", {"content": content})
        result = await self.inner.complete(merged)
        return [{"summary": f"[{i}] {result['summary']}", "batched": len(requests)}
                for i in range(len(requests))]
