"""A Dramatiq worker process: `dramatiq.Worker(broker, worker_threads=<concurrency>)`.

Dramatiq runs an async actor on the `AsyncIO` middleware's one event-loop thread, and the
worker thread that took the message waits in `EventLoopThread.run_coroutine` until the
coroutine returns, so tasks in flight equal worker threads: the knob is `worker_threads`
(the CLI's `--threads`, default 8). Everything else keeps Dramatiq's defaults (prefetch
2 x threads, the 1 s worker timeout, the default middleware). The probe runs on the
event-loop thread, like the actor. `--option results=0` drops the result store (A/B runs
of `benchmarks.peer_ab`).
"""

from __future__ import annotations

import signal

import dramatiq
from dramatiq.asyncio import get_event_loop_thread

from benchmarks.adapters.dramatiq_adapter import make_broker
from benchmarks.probe import Probe
from benchmarks.workers.common import parse_args, take_options


def _flag(text: str) -> bool:
    return text.lower() in ("1", "true", "yes")


OPTIONS = {"results": _flag}


def main() -> None:
    args = parse_args(__doc__)
    options = take_options(args.options, OPTIONS)
    probe = Probe(args.redis_url, args.probe, args.kind)
    broker, _actor = make_broker(args.redis_url, args.name, probe.run_task, worker=True, **options)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    worker = dramatiq.Worker(broker, worker_threads=args.concurrency)
    worker.start()
    loop_thread = get_event_loop_thread()
    if loop_thread is None:
        raise RuntimeError("the AsyncIO middleware did not start its event loop")
    loop_thread.run_coroutine(probe.start())
    try:
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
    finally:
        worker.stop(timeout=1000)
        broker.close()


if __name__ == "__main__":
    main()
