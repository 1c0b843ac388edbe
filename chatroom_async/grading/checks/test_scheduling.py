"""Graded checks of exercise 2 (练习2 智能任务调度): `IntelligentTaskScheduler`.

Each check plays a seeded workload through the real processor and the simulated provider
in virtual time, and compares with a baseline run on the same workload. Collected only by
`chatroom-async grade` (never by the project's test suite).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chatroom_async import TaskPriority
from chatroom_async.grading import ScheduledBackend
from chatroom_async.grading.harness import GradingError, Watch, run_scenario, timed
from chatroom_async.grading.workloads import (
    BatchingSimBackend,
    FifoScheduler,
    Job,
    Oracle,
    TierContext,
    Trace,
    dependency_jobs,
    flood_jobs,
    percentile,
    run_jobs,
    simulated,
    starve_jobs,
    summary_jobs,
    throughput,
    vip_jobs,
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
    def vip(job: Job) -> bool:
        return ctx.tier(job.user_id) == "vip"

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
        raise GradingError("calculate_task_priority：VIP 用户的任务应当比免费用户的同级任务"
                           "优先级高")
    if not prio(10, TaskPriority.URGENT) > prio(10, TaskPriority.LOW):
        raise GradingError("calculate_task_priority：同一用户的 URGENT 任务应当比 LOW 任务优先级高")



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





@pytest.mark.points(20, title="自适应并发 adaptive concurrency",
                    hint="提供方的并发上限你事先不知道（两次运行上限不同）。429（RateLimitError）"
                         "就是它在告诉你“太多了”：收到就把同时在途的调用数降下来，一切顺利时再"
                         "慢慢加（加性增、乘性减，见 09 笔记本「自适应并发」一节）。")
def test_adaptive_concurrency(exercise: Any) -> None:
    for limit in (6, 12):
        async def main(limit: int = limit) -> tuple[float, float, float, int]:
            oracle = await run_jobs(flood_jobs(limit), workers=32, backend=ScheduledBackend(
                simulated(9, max_concurrency=limit), Oracle(limit)))
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
            return rejected, throughput(yours), throughput(oracle), failed

        rejected, got, best, failed = run_scenario(main)
        if rejected > 0.10 or failed:
            raise GradingError(f"提供方并发上限为 {limit} 时，{rejected:.0%} 的调用被 429 拒绝"
                               f"（要求 ≤ 10%），{failed} 个任务最终失败")
        if got < 0.75 * best:
            raise GradingError(f"提供方并发上限为 {limit} 时吞吐量 {got:.2f} 个/秒，只有知道上限"
                               f"时的 {got / best:.0%}（要求 ≥ 75%）：并发压得太低了")
