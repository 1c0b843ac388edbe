"""What the goodput workload's peer workers share: the provider call over HTTP (`httpx`),
the Retry-After it asks for, and each request's end written to Redis for the harness.

These modules run in each peer's own environment (`benchmarks/envs.py`: the peer, its
redis-py and httpx), never in ours, so they import nothing from `chatroom_async`. Each
`goodput_<queue>.py` module is one command with two roles:

    <peer python> -m benchmarks.workers.goodput_<queue> worker --redis-url URL --name NS
        --base-url http://127.0.0.1:PORT --concurrency 50
    <peer python> -m benchmarks.workers.goodput_<queue> feed --redis-url URL --name NS
        --plan plan.json

The worker runs the peer's own worker with a `chat` job that makes one chat completion call
and, on a 429, asks the peer's own retry mechanism for a retry after the provider's
Retry-After. The feeder waits for the harness to push the start time on `<NS>:gp:go`, then
enqueues job i at `start + plan[i]` (wall clock, shared by the processes of this machine).
Both write under `<NS>:gp:*`: `sent` (i -> enqueue time),
`done` (i -> "<time> <completed|failed>") and the list `finished` (i, as each ends), which
the harness blocks on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping

import httpx
from redis.asyncio import Redis

MODEL = "glm-4-flash"
#: retries a job may spend on 429s: the budget our workers have (RetryPolicy's
#: `rate_limit_retries` default), so that no queue gives up sooner than another
RATE_LIMIT_RETRIES = 50
CALL_TIMEOUT_S = 60.0  # the task timeout our workers get in this workload


def message(i: int) -> str:
    """The chat message of request i (the same for every mode)."""
    return f"第{i}个问题：请用两句话解释异步任务队列。"


def sent_key(ns: str) -> str:
    return f"{ns}:gp:sent"


def done_key(ns: str) -> str:
    return f"{ns}:gp:done"


def finished_key(ns: str) -> str:
    return f"{ns}:gp:finished"


def go_key(ns: str) -> str:
    return f"{ns}:gp:go"


class RateLimited(Exception):
    """The provider answered 429; `retry_after_s` is the wait it asked for."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"429, retry after {retry_after_s:.3f} s")
        self.retry_after_s = retry_after_s


def retry_after_s(headers: Mapping[str, str], default: float = 1.0) -> float:
    """`retry-after-ms` if the answer has it, else `retry-after` in seconds, else `default`
    (the most precise of what the provider said: the peers get the best case)."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is not None:
            try:
                return max(0.0, float(raw) / scale)
            except ValueError:
                continue
    return default


class Provider:
    """One worker process's HTTP client to the provider, and its Redis for the records."""

    def __init__(self, base_url: str, redis_url: str, ns: str) -> None:
        self.ns = ns
        self.http = httpx.AsyncClient(base_url=base_url, timeout=CALL_TIMEOUT_S,
                                      headers={"Authorization": "Bearer sim"})
        self.redis = Redis.from_url(redis_url)

    async def chat(self, i: int) -> None:
        """One call; a 429 raises RateLimited, another error its httpx error."""
        reply = await self.http.post("/v1/chat/completions", json={
            "model": MODEL, "messages": [{"role": "user", "content": message(i)}]})
        if reply.status_code == 429:
            raise RateLimited(retry_after_s(reply.headers))
        reply.raise_for_status()
        await self.record(i, "completed")

    async def record(self, i: int, status: str) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(done_key(self.ns), str(i), f"{time.time()!r} {status}")
            pipe.rpush(finished_key(self.ns), str(i))
            await pipe.execute()

    async def close(self) -> None:
        await self.http.aclose()
        await close_redis(self.redis)


async def feed(args: argparse.Namespace, enqueue: Callable[[int], Awaitable[object]]) -> None:
    """Wait for the harness's go (the wall-clock time of offset 0, pushed on `go_key`
    once the provider's bucket is empty), then enqueue job i at `start + plan[i]`, noting
    when each went in."""
    plan: list[float] = json.loads(open(args.plan).read())  # noqa: SIM115, ASYNC230 - once
    redis = Redis.from_url(args.redis_url)
    go = None
    while go is None:  # each wait under redis-py 8's 5 s socket timeout
        go = await redis.blpop([go_key(args.name)], timeout=1)
    start = float(go[1])
    for i, at in enumerate(plan):
        await asyncio.sleep(max(0.0, start + at - time.time()))
        await enqueue(i)
        await redis.hset(sent_key(args.name), str(i), repr(time.time()))
    await close_redis(redis)


async def close_redis(redis: Redis) -> None:
    """`aclose()` where redis-py has it (5.0.1 on), else `close()` (arq's redis-py 4.x)."""
    await (redis.aclose() if hasattr(redis, "aclose") else redis.close())


def parse_args(doc: str | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    parser.add_argument("role", choices=("worker", "feed", "scheduler"),
                        help="scheduler: Taskiq only (its retries' scheduler process)")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--name", required=True, help="the run's namespace / queue name")
    parser.add_argument("--base-url", help="the provider (worker)")
    parser.add_argument("--concurrency", type=int, default=50, help="jobs at once (worker)")
    parser.add_argument("--plan", help="JSON list of arrival offsets in seconds (feed)")
    return parser.parse_args()
