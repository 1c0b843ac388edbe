"""An arq worker process: `arq.worker.Worker` with max_jobs=<concurrency>, other settings default.

arq's documented knob for tasks in flight is `max_jobs` (default 10). Everything else keeps
its default, notably `poll_delay=0.5` s (arq polls its sorted set; it has no blocking pop).
"""

from __future__ import annotations

from typing import Any

from arq.connections import RedisSettings
from arq.worker import Worker, func

from benchmarks.probe import Probe
from benchmarks.settings import INDEX_FIELD, TASK_NAME
from benchmarks.workers.common import parse_args


def main() -> None:
    args = parse_args(__doc__)
    probe = Probe(args.redis_url, args.probe, args.kind)

    async def chat(
        ctx: dict[str, Any], user_id: int, request_type: str, request_data: dict
    ) -> None:
        await probe.run_task(request_data.get(INDEX_FIELD))

    async def on_startup(ctx: dict[str, Any]) -> None:
        await probe.start()

    worker = Worker(
        functions=[func(chat, name=TASK_NAME)],
        queue_name=args.name,
        redis_settings=RedisSettings.from_dsn(args.redis_url),
        max_jobs=args.concurrency,
        on_startup=on_startup,
    )
    worker.run()  # handles SIGTERM/SIGINT itself


if __name__ == "__main__":
    main()
