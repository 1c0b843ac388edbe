"""A Taskiq worker process on `ListQueueBroker`: as `benchmarks.workers.taskiq` otherwise.

The same receiver (`run_receiver_task(max_async_tasks=<concurrency>)`, max_prefetch 0) and
the same result backend; only the broker differs (BRPOP from a list, no acknowledgement).
"""

from __future__ import annotations

from benchmarks.workers.common import parse_args, run_until_signalled
from benchmarks.workers.taskiq import serve


def main() -> None:
    run_until_signalled(serve(parse_args(__doc__), kind="list"))


if __name__ == "__main__":
    main()
