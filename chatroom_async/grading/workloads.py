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
                   user_context: Callable[[Any], Mapping[str, Any]] | None = None,
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


# -- the checks' workloads (seeded) ----------------------------------------------------------
def vip_jobs() -> list[Job]:
    """240 chat requests, all NORMAL priority, Poisson at 2.3/s: ~20 % over capacity."""
    rng = random.Random(11)
    return [Job(at, f"v{i:04d}", rng.randint(1, 50))
            for i, at in enumerate(poisson(rng, 2.3, 0.0, 240))]


def starve_jobs() -> list[Job]:
    """400 VIP HIGH requests at 1.9/s (the system's capacity) and 10 free LOW ones early."""
    rng = random.Random(12)
    jobs = [Job(at, f"s{i:04d}", rng.randint(1, 5), TaskPriority.HIGH)
            for i, at in enumerate(poisson(rng, 1.9, 0.0, 400))]
    return jobs + [Job(2.0 + 2 * i, f"f{i:02d}", 40 + i, TaskPriority.LOW) for i in range(10)]


def dependency_jobs() -> list[Job]:
    """Diamonds (a; b, c after a; d after b and c) and chains, one with a blocked root."""
    jobs: list[Job] = []
    rng = random.Random(13)
    for g in range(8):
        at = g * 1.5
        a, b, c, d = (f"g{g}{x}" for x in "abcd")
        msg = "[BLOCK] 违规内容" if g == 5 else f"第{g}组的问题"
        jobs += [Job(at, a, rng.randint(1, 50), request_data={"message": msg}),
                 Job(at, b, rng.randint(1, 50), depends_on=(a,)),
                 Job(at, c, rng.randint(1, 50), depends_on=(a,)),
                 Job(at, d, rng.randint(1, 50), depends_on=(b, c))]
    for k in range(4):
        chain = [f"k{k}{i}" for i in range(4)]
        jobs += [Job(0.5 * k, t, rng.randint(1, 50), depends_on=(chain[i - 1],) if i else ())
                 for i, t in enumerate(chain)]
    return jobs


def summary_jobs() -> list[Job]:
    """200 short summaries, Poisson at 8/s, then 5 stragglers 10 s apart."""
    rng = random.Random(21)
    times = poisson(rng, 8.0, 0.0, 200)
    times += [times[-1] + 10.0 * (i + 1) for i in range(5)]
    return [Job(at, f"b{i:04d}", rng.randint(1, 50), request_type="content_summary",
                request_data={"content": f"第{i}条消息：今天的会议改到下午三点。"})
            for i, at in enumerate(times)]


def flood_jobs(limit: int) -> list[Job]:
    """300 chat requests at 1.5x what a provider allowing `limit` calls can serve."""
    rng = random.Random(limit)
    return [Job(at, f"c{i:04d}", rng.randint(1, 50))
            for i, at in enumerate(poisson(rng, limit / 3.2 * 1.5, 0.0, 300))]


class Oracle:
    """Knows the provider's limit: the throughput a perfect limiter reaches."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sem: asyncio.Semaphore | None = None

    async def call_backend(self, backend: AIBackend, request: AIRequest) -> dict[str, Any]:
        self.sem = self.sem or asyncio.Semaphore(self.limit)
        async with self.sem:
            return await backend.complete(request)

    async def call_batched(self, backend: AIBackend, request: AIRequest) -> dict[str, Any]:
        return await self.call_backend(backend, request)


def throughput(trace: Trace) -> float:
    """Completed tasks per second, from the run's start to its last completion."""
    ends = [t for status, t in trace.finished.values() if status == "completed"]
    return len(ends) / max(ends) if ends else 0.0
