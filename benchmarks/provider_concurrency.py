"""What raising a worker's concurrency buys against a provider's concurrency limit, over HTTP.

Runs the real processor (embedded fakeredis) with `OpenAIBackend` against sim-server's
realistic profile (a glm-4-flash that admits 5 calls at once and rejects the rest with 429
code 1302, no Retry-After, as Zhipu does) at several `max_workers`, the same tasks each
time, and prints: wall time, tasks/s, completed and failed tasks, HTTP calls made, 429s,
and the p50/p95 of each task's time from submit to its end. A script that prints figures,
not a test. Needs the `provider` extra. Run from the repository root:

    .venv/bin/python benchmarks/provider_concurrency.py [--tasks 60] [--workers 5,10,20]
        [--shared-limit 5]

`--shared-limit N` runs every worker count with `ProcessorSettings(provider_limits=
ProviderLimits(max_concurrency=N))`: the workers then wait their turn instead of calling.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatroom_async import AsyncAIProcessor, ProcessorSettings  # noqa: E402
from chatroom_async.providers import OpenAIBackend, SimServer  # noqa: E402
from chatroom_async.settings import ProviderLimits  # noqa: E402
from chatroom_async.simulated import SimulatedAIBackend  # noqa: E402


async def one_run(workers: int, tasks: int, seed: int,
                  shared_limit: int | None) -> dict[str, float]:
    sim = SimulatedAIBackend.from_profile("realistic", seed=seed, output_tokens_p50=60.0)
    limits = ProviderLimits(max_concurrency=shared_limit) if shared_limit else None
    settings = ProcessorSettings(provider_limits=limits)
    async with SimServer(sim) as server, OpenAIBackend(
            model="glm-4-flash", base_url=server.base_url, api_key="sim",
            task_headers=True) as backend:
        async with AsyncAIProcessor(max_workers=workers, backend=backend, seed=seed,
                                    settings=settings) as p:
            began = time.perf_counter()
            ids = [await p.submit_task(1, "chat_completion", {"message": f"问题 {i}"},
                                       timeout=60.0, max_retries=3) for i in range(tasks)]
            finals = [await p.wait_for_task(task_id, timeout=600) for task_id in ids]
            wall = time.perf_counter() - began
    spans = sorted(f["completed_at"] - f["created_at"] for f in finals)
    return {"workers": workers, "wall_s": wall, "tasks_per_s": tasks / wall,
            "completed": sum(f["status"] == "completed" for f in finals),
            "failed": sum(f["status"] == "failed" for f in finals),
            "calls": len(server.records), "429s": server.counts["status_429"],
            "p50_s": statistics.median(spans), "p95_s": spans[int(0.95 * (len(spans) - 1))]}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=60)
    parser.add_argument("--workers", default="5,10,20")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--shared-limit", type=int, default=None)
    args = parser.parse_args()
    print(f"{'workers':>7} {'wall s':>7} {'tasks/s':>7} {'done':>5} {'failed':>6} "
          f"{'calls':>6} {'429s':>5} {'p50 s':>6} {'p95 s':>6}")
    for workers in (int(w) for w in args.workers.split(",")):
        r = await one_run(workers, args.tasks, args.seed, args.shared_limit)
        print(f"{r['workers']:>7} {r['wall_s']:>7.1f} {r['tasks_per_s']:>7.2f} "
              f"{r['completed']:>5} {r['failed']:>6} {r['calls']:>6} {r['429s']:>5} "
              f"{r['p50_s']:>6.1f} {r['p95_s']:>6.1f}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
