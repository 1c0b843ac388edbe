"""A worker process of our queue: an `AsyncAIProcessor` with max_workers=<concurrency>.

Its backend is `FunctionBackend(<the probe>)`, so our worker runs the same task body and
reports through the same probe as the peers' workers. The CLI
(`chatroom-async worker --redis-url URL --namespace NS --concurrency N --backend instant`)
does the same work with a built-in backend but cannot report through the probe, so the
runner uses this module. If the processor's constructor changes, fix `build_processor`
(and `make_processor` in `benchmarks.adapters.ours_adapter`).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from benchmarks.adapters.ours_adapter import make_processor, maybe_await
from benchmarks.probe import Probe
from benchmarks.settings import INDEX_FIELD
from benchmarks.workers.common import parse_args, run_until_signalled


def build_processor(args: argparse.Namespace, probe: Probe) -> Any:
    """The worker-side processor: `max_workers` slots, the probe as its AI backend."""
    from chatroom_async import ProcessorSettings
    from chatroom_async.backend import FunctionBackend

    async def chat(request: Any) -> dict:
        await probe.run_task(request.request_data.get(INDEX_FIELD))
        return {"ok": True}

    return make_processor(
        args.redis_url,
        args.name,
        max_workers=args.concurrency,
        backend=FunctionBackend(chat),
        settings=ProcessorSettings() if args.prefetch is None
        else ProcessorSettings(prefetch=args.prefetch, prefetch_below_s=None),
    )


async def serve(args: argparse.Namespace) -> None:
    probe = Probe(args.redis_url, args.probe, args.kind)
    processor = build_processor(args, probe)
    await maybe_await(processor.start())
    await probe.start()
    try:
        await asyncio.Event().wait()
    finally:
        await maybe_await(processor.stop())


def main() -> None:
    run_until_signalled(serve(parse_args(__doc__)))


if __name__ == "__main__":
    main()
