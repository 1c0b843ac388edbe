"""A SAQ worker process: `saq.Worker(queue, concurrency=<concurrency>)`, other settings default.

SAQ's documented knob for tasks in flight is the worker's `concurrency` (default 10). The
queue is `saq.Queue.from_url(url, name=<name>)`; timers, dequeue timeout and job defaults
(timeout 10 s, ttl 600 s, retries 1) are SAQ's own.
"""

from __future__ import annotations

import argparse
from typing import Any

from saq import Queue, Worker

from benchmarks.probe import Probe
from benchmarks.settings import INDEX_FIELD, TASK_NAME
from benchmarks.workers.common import parse_args, run_until_signalled


async def serve(args: argparse.Namespace) -> None:
    probe = Probe(args.redis_url, args.probe, args.kind)

    async def chat(
        ctx: dict[str, Any], *, user_id: int, request_type: str, request_data: dict
    ) -> None:
        await probe.run_task(request_data.get(INDEX_FIELD))

    async def startup(ctx: dict[str, Any]) -> None:
        await probe.start()

    queue = Queue.from_url(args.redis_url, name=args.name)
    worker = Worker(queue, [(TASK_NAME, chat)], concurrency=args.concurrency, startup=startup)
    await queue.connect()
    try:
        await worker.start()
    finally:
        await queue.disconnect()


def main() -> None:
    run_until_signalled(serve(parse_args(__doc__)))


if __name__ == "__main__":
    main()
