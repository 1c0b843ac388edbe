"""A Taskiq worker process: `taskiq.api.run_receiver_task(broker, max_async_tasks=<concurrency>)`.

`max_async_tasks` is Taskiq's documented knob for tasks in flight per worker process (the
CLI's `--max-async-tasks`, default 100); `max_prefetch` stays 0 and acknowledgement stays
"when saved", the CLI's defaults. Running the receiver in this module instead of
`taskiq worker` gives one process (the CLI adds a supervisor process around its workers).
"""

from __future__ import annotations

import argparse

from taskiq.api import run_receiver_task

from benchmarks.adapters.taskiq_adapter import make_broker
from benchmarks.probe import Probe
from benchmarks.workers.common import parse_args, run_until_signalled


async def serve(args: argparse.Namespace) -> None:
    probe = Probe(args.redis_url, args.probe, args.kind)
    broker = make_broker(args.redis_url, args.name, probe.run_task)
    broker.is_worker_process = True
    await broker.startup()
    await probe.start()
    try:
        await run_receiver_task(broker, max_async_tasks=args.concurrency)
    finally:
        await broker.shutdown()


def main() -> None:
    run_until_signalled(serve(parse_args(__doc__)))


if __name__ == "__main__":
    main()
