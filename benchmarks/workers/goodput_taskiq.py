"""Taskiq in the goodput workload: its worker calls the provider; a 429 is retried by
Taskiq's `SmartRetryMiddleware` after the provider's Retry-After, through a schedule source.

Taskiq's documented retry is a middleware: `SmartRetryMiddleware` re-sends a failed task
after a delay (the task's `delay` label, else `default_delay`). Without a schedule source
it re-kicks the task with the delay as a label only, which taskiq-redis's brokers do not
act on (the retry would come at once); with one it schedules the retry for that time, and
a scheduler process sends it. So the run has taskiq-redis's `ListRedisScheduleSource` and a
scheduler process (`role scheduler`: Taskiq's scheduler loop with `update_interval=1`, as
`taskiq scheduler --update-interval 1`; its default of 60 s would hold retries for up to a
minute), and the task sets its message's `delay` label to the answer's Retry-After before
raising. The broker is `RedisStreamBroker` (acknowledged delivery, as in the main harness);
the worker is `run_receiver_task(broker, max_async_tasks=<concurrency>)`; the retry budget
is the one every queue gets. Commands: see `goodput_common`, plus
`... goodput_taskiq scheduler --redis-url URL --name NS`.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import timedelta

from taskiq import AsyncBroker, Context, SmartRetryMiddleware, TaskiqDepends, TaskiqScheduler
from taskiq.api import run_receiver_task
from taskiq.cli.scheduler.run import SchedulerLoop
from taskiq_redis import ListRedisScheduleSource, RedisStreamBroker

from benchmarks.workers.common import run_until_signalled
from benchmarks.workers.goodput_common import (
    RATE_LIMIT_RETRIES,
    Provider,
    RateLimited,
    feed,
    parse_args,
)

MAX_RETRIES = 1 + RATE_LIMIT_RETRIES  # the middleware's count includes the first run


def make_broker(args: argparse.Namespace, provider: Provider | None) -> AsyncBroker:
    source = ListRedisScheduleSource(args.redis_url, prefix=f"{args.name}:schedule")
    broker = RedisStreamBroker(args.redis_url, queue_name=args.name).with_middlewares(
        SmartRetryMiddleware(default_retry_count=MAX_RETRIES, default_delay=1.0,
                             schedule_source=source))

    async def chat(i: int, context: Context = TaskiqDepends()) -> None:  # noqa: B008 - how
        # Taskiq documents giving a task its Context
        assert provider is not None, "the feeder does not run tasks"
        try:
            await provider.chat(i)
        except RateLimited as exc:
            if int(context.message.labels.get("_retries", 0)) + 1 >= MAX_RETRIES:
                await provider.record(i, "failed")
            context.message.labels["delay"] = exc.retry_after_s
            raise

    broker.register_task(chat, task_name="chat", retry_on_error=True)
    broker.schedule_source = source  # type: ignore[attr-defined]
    return broker


async def worker(args: argparse.Namespace) -> None:
    provider = Provider(args.base_url, args.redis_url, args.name)
    broker = make_broker(args, provider)
    broker.is_worker_process = True
    await broker.startup()
    try:
        await run_receiver_task(broker, max_async_tasks=args.concurrency)
    finally:
        await broker.shutdown()
        await provider.close()


async def scheduler(args: argparse.Namespace) -> None:
    broker = make_broker(args, None)
    source = broker.schedule_source  # type: ignore[attr-defined]
    broker.is_scheduler_process = True
    await broker.startup()
    await source.startup()
    try:
        await SchedulerLoop(TaskiqScheduler(broker, [source])).run(
            update_interval=timedelta(seconds=1), loop_interval=timedelta(seconds=1))
    finally:
        await source.shutdown()
        await broker.shutdown()


async def feeder(args: argparse.Namespace) -> None:
    broker = make_broker(args, None)
    await broker.startup()  # creates the consumer group before the first kick
    chat = broker.find_task("chat")
    assert chat is not None

    async def enqueue(i: int) -> object:
        return await chat.kiq(i)

    await feed(args, enqueue)
    await broker.shutdown()


def main() -> None:
    args = parse_args(__doc__)
    if args.role == "worker":
        run_until_signalled(worker(args))
    elif args.role == "scheduler":
        run_until_signalled(scheduler(args))
    else:
        asyncio.run(feeder(args))


if __name__ == "__main__":
    main()
