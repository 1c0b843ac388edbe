"""Graded checks of exercise 2 (练习2 智能任务调度): `IntelligentTaskScheduler`.

Each check plays a seeded workload through the real processor and the simulated provider
in virtual time, and compares with a baseline run on the same workload. Collected only by
`chatroom-async grade` (never by the project's test suite).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from chatroom_async import TaskPriority
from chatroom_async.grading import ScheduledBackend
from chatroom_async.grading.harness import GradingError, Watch, run_scenario, timed
from chatroom_async.grading.workloads import (
    BatchingSimBackend,
    FifoScheduler,
    Job,
    TierContext,
    Trace,
    percentile,
    poisson,
    run_jobs,
    simulated,
)

WORKERS = 6  # the processor's max_workers in the priority checks (~1.9 tasks/s)


def new_scheduler(exercise: Any) -> Any:
    return exercise("scheduling").IntelligentTaskScheduler()


class Watched(Watch):
    """The student's scheduler as the processor sees it: `score` and the backend calls,
    each watched for blocking the event loop and for errors the worker would swallow."""

    def __init__(self, scheduler: Any) -> None:
        super().__init__()
        self.s = scheduler

    def score(self, task: Any, user_context: Any) -> float:
        return self.s.score(task, user_context)  # type: ignore[no-any-return]

    async def call_backend(self, backend: Any, request: Any) -> Any:
        return await self.run(self.s.call_backend(backend, request), "call_backend")

    async def call_batched(self, backend: Any, request: Any) -> Any:
        return await self.run(self.s.call_batched(backend, request), "call_batched")


async def close_quietly(scheduler: Any) -> None:
    try:
        await scheduler.aclose()
    except (NotImplementedError, AttributeError):
        pass


def vip_jobs() -> list[Job]:
    """240 chat requests, all NORMAL priority, Poisson at 2.3/s: ~20 % over capacity."""
    rng = random.Random(11)
    return [Job(at, f"v{i:04d}", rng.randint(1, 50))
            for i, at in enumerate(poisson(rng, 2.3, 0.0, 240))]


@pytest.mark.points(20, title="VIP 优先 VIP first",
                    hint="排队时所有人一视同仁：想一想 user_context 里的 tier（用户等级）和"
                         "任务自己的 priority 应该怎样变成一个分数。score 越小越先运行"
                         "（见 09 笔记本「优先级」一节）。")
def test_vip_first(exercise: Any) -> None:
    async def main() -> tuple[Trace, Trace, TierContext]:
        ctx = TierContext()
        fifo = await run_jobs(vip_jobs(), backend=simulated(5), workers=WORKERS,
                              scheduler=FifoScheduler(), user_context=ctx)
        scheduler = new_scheduler(exercise)
        yours = await run_jobs(vip_jobs(), backend=simulated(5), workers=WORKERS,
                               scheduler=Watched(scheduler), user_context=ctx)
        return fifo, yours, ctx

    fifo, yours, ctx = run_scenario(main)
    vip = (lambda j: ctx.tier(j.user_id) == "vip")
    base, got = percentile(fifo.waits(vip), 95), percentile(yours.waits(vip), 95)
    if got > 0.5 * base:
        raise GradingError(f"VIP 用户的 p95 等待 {got:.1f} 秒，先来先服务是 {base:.1f} 秒；"
                           f"要求至多它的 50%（{0.5 * base:.1f} 秒）")
    s = new_scheduler(exercise)
    from chatroom_async import AITask

    def prio(user: int, priority: TaskPriority) -> float:
        task = AITask("p", user, "chat_completion", {"message": "hi"}, priority=priority)
        return float(s.calculate_task_priority(task, ctx(user)))

    if not prio(1, TaskPriority.NORMAL) > prio(40, TaskPriority.NORMAL):
        raise GradingError("calculate_task_priority：VIP 用户的任务应当比免费用户的同级任务优先级高")
    if not prio(10, TaskPriority.URGENT) > prio(10, TaskPriority.LOW):
        raise GradingError("calculate_task_priority：同一用户的 URGENT 任务应当比 LOW 任务优先级高")


def starve_jobs() -> list[Job]:
    """400 VIP HIGH requests at 1.9/s (the system's capacity) and 10 free LOW ones early."""
    rng = random.Random(12)
    jobs = [Job(at, f"s{i:04d}", rng.randint(1, 5), TaskPriority.HIGH)
            for i, at in enumerate(poisson(rng, 1.9, 0.0, 400))]
    return jobs + [Job(2.0 + 2 * i, f"f{i:02d}", 40 + i, TaskPriority.LOW) for i in range(10)]


@pytest.mark.points(20, title="不饿死 no starvation",
                    hint="低优先级任务一直被后来的高优先级任务插队，等了几分钟。分数只在入队时算"
                         "一次，怎样让“等得越久越该轮到”？把分数想成一个截止时间：到达时间加上"
                         "一段随优先级变化的宽限（见 09 笔记本「老化」一节）。")
def test_no_starvation(exercise: Any) -> None:
    async def main() -> Trace:
        scheduler = new_scheduler(exercise)
        return await run_jobs(starve_jobs(), backend=simulated(5), workers=WORKERS,
                              scheduler=Watched(scheduler), user_context=TierContext())

    trace = run_scenario(main)
    if len(trace.started) < len(trace.jobs):
        raise GradingError(f"有 {len(trace.jobs) - len(trace.started)} 个任务一直没有开始")
    worst = max(trace.waits(lambda j: j.priority is TaskPriority.LOW))
    if worst > 90.0:
        raise GradingError(f"免费用户的 LOW 任务最长等了 {worst:.0f} 秒（要求 ≤ 90 秒；"
                           "系统一直接近满载）")


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


@pytest.mark.points(20, title="任务依赖 dependencies",
                    hint="有任务在它依赖的任务完成之前就开始了（或者依赖失败了它还在运行）。"
                         "submit 要立刻返回 task_id，但把任务先扣在手里，等依赖都 completed 再"
                         "真正提交；可以用 processor.wait_for_task（见 09 笔记本「依赖」一节）。")
def test_dependencies(exercise: Any) -> None:
    jobs = dependency_jobs()
    blocked = {"g5a", "g5b", "g5c", "g5d"}
    slow_submits: list[str] = []

    async def main() -> Trace:
        scheduler = new_scheduler(exercise)
        loop = asyncio.get_running_loop()

        async def submit(p: Any, job: Job) -> None:
            before = loop.time()
            got = await timed(scheduler.submit(p, job.request(), job.depends_on), "submit")
            if got != job.task_id:
                raise GradingError(f"submit 应返回任务 id {job.task_id!r}，却返回了 {got!r}")
            if loop.time() > before:
                slow_submits.append(job.task_id)

        try:
            return await run_jobs(jobs, backend=simulated(6), workers=8, submit=submit,
                                  expect=len(jobs) - 3, settle_s=60.0, horizon_s=600.0)
        finally:
            await close_quietly(scheduler)

    trace = run_scenario(main)
    if slow_submits:
        raise GradingError(f"submit 等依赖完成之后才返回（如 {slow_submits[0]}）：应当立刻返回")
    for job in jobs:
        start = trace.started.get(job.task_id)
        for dep in job.depends_on:
            status, end = trace.finished.get(dep, ("unfinished", float("inf")))
            if start is not None and (status != "completed" or start < end):
                raise GradingError(f"{job.task_id} 在它依赖的 {dep}（{status}）完成之前就开始了")
    missing = [j.task_id for j in jobs if j.task_id not in blocked
               and trace.finished.get(j.task_id, ("", 0.0))[0] != "completed"]
    if missing:
        raise GradingError(f"依赖都已完成的任务没有运行完：{missing[:5]}")


def summary_jobs() -> list[Job]:
    """200 short summaries, Poisson at 8/s, then 5 stragglers 10 s apart."""
    rng = random.Random(21)
    times = poisson(rng, 8.0, 0.0, 200)
    times += [times[-1] + 10.0 * (i + 1) for i in range(5)]
    return [Job(at, f"b{i:04d}", rng.randint(1, 50), request_type="content_summary",
                request_data={"content": f"第{i}条消息：今天的会议改到下午三点。"})
            for i, at in enumerate(times)]


@pytest.mark.points(20, title="批处理 batching",
                    hint="调用次数没有减少，或者有请求为了凑批等得太久。把一小段时间窗口里到达的"
                         "摘要请求合成一次 complete_batch；窗口到时就发，不必等满（最后几个零散"
                         "请求也要有人发出去）（见 09 笔记本「批处理」一节）。")
def test_batching(exercise: Any) -> None:
    async def main() -> tuple[Trace, Trace, int]:
        plain = await run_jobs(summary_jobs(), backend=BatchingSimBackend(simulated(7)),
                               workers=40)
        scheduler = new_scheduler(exercise)
        inner = simulated(7)
        watched = Watched(scheduler)
        backend = ScheduledBackend(BatchingSimBackend(inner), watched, batching=True)
        try:
            yours = await run_jobs(summary_jobs(), backend=backend, workers=40, horizon_s=600.0)
        finally:
            await close_quietly(scheduler)
        watched.raise_caught()
        return plain, yours, inner.stats().calls

    plain, yours, calls = run_scenario(main)
    done = len(yours.latencies())
    if done < len(yours.jobs):
        raise GradingError(f"只有 {done}/{len(yours.jobs)} 个摘要任务完成：凑不满一批的请求被"
                           "一直扣着")
    if calls > 0.4 * len(yours.jobs):
        raise GradingError(f"后端被调用了 {calls} 次（{len(yours.jobs)} 个任务）；要求至少减少 "
                           "60%")
    base, got = percentile(plain.latencies(), 95), percentile(yours.latencies(), 95)
    if got > base + 1.0:
        raise GradingError(f"批处理后 p95 延迟 {got:.1f} 秒，不批处理是 {base:.1f} 秒；最多只能"
                           "多 1 秒")


def flood_jobs(limit: int) -> list[Job]:
    """300 chat requests at 1.5x what a provider allowing `limit` calls can serve."""
    rng = random.Random(limit)
    return [Job(at, f"c{i:04d}", rng.randint(1, 50))
            for i, at in enumerate(poisson(rng, limit / 3.2 * 1.5, 0.0, 300))]


class _Oracle:
    """Knows the provider's limit: the throughput a perfect limiter reaches."""

    def __init__(self, limit: int) -> None:
        self.limit, self.sem = limit, None

    async def call_backend(self, backend: Any, request: Any) -> Any:
        self.sem = self.sem or asyncio.Semaphore(self.limit)
        async with self.sem:
            return await backend.complete(request)


def _throughput(trace: Trace) -> float:
    ends = [t for status, t in trace.finished.values() if status == "completed"]
    return len(ends) / max(ends) if ends else 0.0


@pytest.mark.points(20, title="自适应并发 adaptive concurrency",
                    hint="提供方的并发上限你事先不知道（两次运行上限不同）。429（RateLimitError）"
                         "就是它在告诉你“太多了”：收到就把同时在途的调用数降下来，一切顺利时再"
                         "慢慢加（加性增、乘性减，见 09 笔记本「自适应并发」一节）。")
def test_adaptive_concurrency(exercise: Any) -> None:
    for limit in (6, 12):
        async def main(limit: int = limit) -> tuple[float, float, float, int]:
            oracle = await run_jobs(flood_jobs(limit), workers=32, backend=ScheduledBackend(
                simulated(9, max_concurrency=limit), _Oracle(limit)))
            scheduler = new_scheduler(exercise)
            inner = simulated(9, max_concurrency=limit)
            watched = Watched(scheduler)
            yours = await run_jobs(flood_jobs(limit), workers=32,
                                   backend=ScheduledBackend(inner, watched))
            await close_quietly(scheduler)
            watched.raise_caught()
            stats = inner.stats()
            rejected = stats.errors.get("concurrency_limit", 0) / max(1, stats.calls)
            failed = sum(1 for s, _ in yours.finished.values() if s != "completed")
            return rejected, _throughput(yours), _throughput(oracle), failed

        rejected, got, best, failed = run_scenario(main)
        if rejected > 0.10 or failed:
            raise GradingError(f"提供方并发上限为 {limit} 时，{rejected:.0%} 的调用被 429 拒绝"
                               f"（要求 ≤ 10%），{failed} 个任务最终失败")
        if got < 0.75 * best:
            raise GradingError(f"提供方并发上限为 {limit} 时吞吐量 {got:.2f} 个/秒，只有知道上限"
                               f"时的 {got / best:.0%}（要求 ≥ 75%）：并发压得太低了")
