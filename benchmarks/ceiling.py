"""The ceiling of one-at-a-time submits on this machine: a round trip with nothing around it.

A minimal asyncio client (an `asyncio.Protocol` with hiredis's reader: one loop wake-up per
reply, no pool, no timeouts) sends commands one after another, each awaited before the
next, and prints how many per second it gets:

* `PING`, the cheapest round trip the server answers;
* `EVALSHA enqueue.lua` with the arguments a real submit sends (a fresh task id, the record
  JSON of a small chat request, its priority and score), i.e. the server-side work of one
  `submit_task` with none of our Python around it.

No queue can submit one at a time faster than the second figure on the same machine; the
benchmark's "enqueue, one at a time" row is to be read against it. A script that prints
figures, not a test. Run from the repository root:

    .venv/bin/python benchmarks/ceiling.py [--redis-url redis://127.0.0.1:6379/9] [-n 10000]

It writes only keys under its own namespace (`ceiling-<hex>:`) and deletes them at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
import uuid
from collections import deque
from pathlib import Path
from urllib.parse import urlparse

if __package__ in (None, ""):  # `python benchmarks/ceiling.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hiredis
import redis.asyncio as aioredis

from benchmarks.settings import DEFAULT_REDIS_URL, REQUEST_DATA, REQUEST_TYPE, USER_ID
from chatroom_async.store.keys import Keys
from chatroom_async.store.queue import SOURCES, TaskQueue
from chatroom_async.store.records import spec_json
from chatroom_async.task import AITask


class _Client(asyncio.Protocol):
    """Replies are matched to requests in order: one future per command sent."""

    def __init__(self) -> None:
        self._reader = hiredis.Reader()
        self._waiting: deque[asyncio.Future[object]] = deque()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            future = self._waiting.popleft()
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def call(self, *args: str | int | bytes) -> asyncio.Future[object]:
        assert self._transport is not None
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        self._transport.write(hiredis.pack_command(args))
        return future


async def measure(url: str, n: int) -> dict[str, float]:
    parts = urlparse(url)
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_connection(
        _Client, parts.hostname or "127.0.0.1", parts.port or 6379)
    transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    keys = Keys(f"ceiling-{uuid.uuid4().hex[:8]}")
    try:
        if parts.password:
            await client.call("AUTH", parts.password)
        await client.call("SELECT", int((parts.path or "/0").lstrip("/") or 0))
        sha = await client.call("SCRIPT", "LOAD", SOURCES["enqueue"])
        assert isinstance(sha, bytes)
        template = AITask(task_id="", user_id=USER_ID, request_type=REQUEST_TYPE,
                          request_data=REQUEST_DATA, created_at=time.time())
        spec = spec_json(template)
        rates: dict[str, float] = {}
        for what in ("PING", "EVALSHA enqueue.lua"):
            began = time.perf_counter()
            for i in range(n):
                if what == "PING":
                    await client.call("PING")
                else:
                    task_id = str(uuid.uuid4())
                    await client.call("EVALSHA", sha, 5, keys.task(task_id), keys.ready,
                                      keys.wake, keys.stats, keys.depth, task_id, spec, 2, 3,
                                      repr(float(i)))
            rates[what] = n / (time.perf_counter() - began)
        return rates
    finally:
        transport.close()
        cleaner = aioredis.Redis.from_url(url, decode_responses=True)
        await TaskQueue(cleaner, keys).purge()
        await cleaner.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("-n", type=int, default=10_000, help="commands per figure")
    args = parser.parse_args()
    for what, rate in asyncio.run(measure(args.redis_url, args.n)).items():
        print(f"{what:22s} one at a time: {rate:8,.0f}/s ({1e6 / rate:5.0f} µs per round trip)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
