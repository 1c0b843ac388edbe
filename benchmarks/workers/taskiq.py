"""A Taskiq worker process: `taskiq.api.run_receiver_task(broker, max_async_tasks=<concurrency>)`.

`max_async_tasks` is Taskiq's documented knob for tasks in flight per worker process (the
CLI's `--max-async-tasks`, default 100). On the stream broker `max_prefetch` is set to the
same number: Taskiq's CLI guide recommends `--max-prefetch` for high message rates on
brokers that support acknowledgements, which the stream broker does (it names no value;
one more task per slot is ours). The list broker has no acknowledgements, so it keeps the
default 0. Acknowledgement stays "when saved", the default. Running the receiver in this
module instead of `taskiq worker` gives one process (the CLI adds a supervisor process
around its workers). `--option` changes one setting for the A/B runs of
`benchmarks.peer_ab` (see OPTIONS).
"""

from __future__ import annotations

import argparse

from taskiq.acks import AcknowledgeType
from taskiq.api import run_receiver_task

from benchmarks.adapters.taskiq_adapter import make_broker
from benchmarks.probe import Probe
from benchmarks.workers.common import parse_args, run_until_signalled, take_options


def _flag(text: str) -> bool:
    return text.lower() in ("1", "true", "yes")


#: settings an A/B run may change: receiver (max_prefetch, ack_type) and broker options
OPTIONS = {
    "max_prefetch": int,
    "ack_type": AcknowledgeType,
    "results": _flag,
    "pool": int,
    "xread_count": int,
}
RECEIVER_OPTIONS = {"max_prefetch": "max_prefetch", "ack_type": "ack_time"}


async def serve(args: argparse.Namespace, kind: str = "stream") -> None:
    probe = Probe(args.redis_url, args.probe, args.kind)
    options = take_options(args.options, OPTIONS)
    receiver = {RECEIVER_OPTIONS[k]: options.pop(k) for k in list(options) if k in RECEIVER_OPTIONS}
    receiver.setdefault("max_prefetch", args.concurrency if kind == "stream" else 0)
    broker = make_broker(args.redis_url, args.name, probe.run_task, kind=kind, **options)
    broker.is_worker_process = True
    await broker.startup()
    await probe.start()
    try:
        await run_receiver_task(broker, max_async_tasks=args.concurrency, **receiver)
    finally:
        await broker.shutdown()


def main() -> None:
    run_until_signalled(serve(parse_args(__doc__)))


if __name__ == "__main__":
    main()
