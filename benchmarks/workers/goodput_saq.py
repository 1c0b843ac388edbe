"""SAQ in the goodput workload: its worker calls the provider; a 429 uses SAQ's job retries
with the provider's Retry-After as the job's `retry_delay`.

SAQ retries a job that raises while `retries` (total attempts, here 1 + the rate-limit
budget every queue gets) exceeds its attempts, after the job's `retry_delay` (documented
Job fields; `retry_backoff` stays off). The delay is read from the job when the retry is
scheduled (`Job.next_retry_delay`), so the job sets it to the Retry-After of the answer
before raising: SAQ's own mechanism, fed the provider's wait. The worker is
`saq.Worker(queue, concurrency=<concurrency>)`, other settings SAQ's defaults; jobs get
`timeout=60` (the task timeout our workers get here; SAQ's default is 10 s). Commands: see
`goodput_common`.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from saq import Queue, Worker

from benchmarks.workers.common import run_until_signalled
from benchmarks.workers.goodput_common import (
    CALL_TIMEOUT_S,
    RATE_LIMIT_RETRIES,
    Provider,
    RateLimited,
    feed,
    parse_args,
)


async def worker(args: argparse.Namespace) -> None:
    provider = Provider(args.base_url, args.redis_url, args.name)

    async def chat(ctx: dict[str, Any], *, i: int) -> None:
        job = ctx["job"]
        try:
            await provider.chat(i)
        except RateLimited as exc:
            if not job.retryable:
                await provider.record(i, "failed")
            job.retry_delay = exc.retry_after_s
            raise

    queue = Queue.from_url(args.redis_url, name=args.name)
    await queue.connect()
    try:
        await Worker(queue, [("chat", chat)], concurrency=args.concurrency).start()
    finally:
        await queue.disconnect()
        await provider.close()


async def feeder(args: argparse.Namespace) -> None:
    queue = Queue.from_url(args.redis_url, name=args.name)
    await queue.connect()

    async def enqueue(i: int) -> object:
        return await queue.enqueue("chat", i=i, key=f"{args.name}:{i}",
                                   retries=1 + RATE_LIMIT_RETRIES, retry_delay=1.0,
                                   timeout=int(CALL_TIMEOUT_S))

    await feed(args, enqueue)
    await queue.disconnect()


def main() -> None:
    args = parse_args(__doc__)
    if args.role == "worker":
        run_until_signalled(worker(args))
    else:
        asyncio.run(feeder(args))


if __name__ == "__main__":
    main()
