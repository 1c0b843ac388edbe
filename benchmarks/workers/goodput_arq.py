"""arq in the goodput workload: its worker calls the provider; a 429 raises arq's
`Retry(defer=<Retry-After>)`.

arq documents `Retry` as the way for a job to ask to be run again after `defer` (counted
against the function's `max_tries`, here 1 + the rate-limit budget every queue gets). The
worker is `arq.worker.Worker` with `max_jobs=<concurrency>`, other settings arq's defaults
(`poll_delay=0.5`). Jobs are enqueued with `ArqRedis.enqueue_job`, with ids under the run's
name so that the harness can delete their keys. Commands: see `goodput_common`.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Retry, Worker, func

from benchmarks.workers.goodput_common import (
    RATE_LIMIT_RETRIES,
    Provider,
    RateLimited,
    close_redis,
    feed,
    parse_args,
)

MAX_TRIES = 1 + RATE_LIMIT_RETRIES


def worker(args: argparse.Namespace) -> None:
    provider = Provider(args.base_url, args.redis_url, args.name)

    async def chat(ctx: dict[str, Any], i: int) -> None:
        try:
            await provider.chat(i)
        except RateLimited as exc:
            if ctx["job_try"] >= MAX_TRIES:
                await provider.record(i, "failed")
                raise
            raise Retry(defer=exc.retry_after_s) from exc

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        await provider.close()

    Worker(functions=[func(chat, name="chat", max_tries=MAX_TRIES)], queue_name=args.name,
           redis_settings=RedisSettings.from_dsn(args.redis_url), max_jobs=args.concurrency,
           on_shutdown=on_shutdown).run()  # handles SIGTERM/SIGINT itself


async def feeder(args: argparse.Namespace) -> None:
    pool = await create_pool(RedisSettings.from_dsn(args.redis_url),
                             default_queue_name=args.name)

    async def enqueue(i: int) -> object:
        return await pool.enqueue_job("chat", i, _job_id=f"{args.name}:{i}")

    await feed(args, enqueue)
    await close_redis(pool)


def main() -> None:
    args = parse_args(__doc__)
    if args.role == "worker":
        worker(args)
    else:
        asyncio.run(feeder(args))


if __name__ == "__main__":
    main()
