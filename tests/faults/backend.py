"""The backend the fault tests' worker processes run (`--backend import:tests.faults.backend:
make`): it counts each run of each task in Redis before it sleeps, so a test can check that
nothing ran more often than its deliveries say."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from chatroom_async import ServerError
from chatroom_async.backend import AIRequest


class CountingBackend:
    """Counts a run (HINCRBY runs key) then sleeps FAULT_SLEEP_S seconds."""

    def __init__(self) -> None:
        self.url = os.environ["FAULT_REDIS_URL"]
        self.runs_key = os.environ["FAULT_RUNS_KEY"]
        self.sleep_s = float(os.environ.get("FAULT_SLEEP_S", "0.2"))
        self._redis: Redis | None = None

    async def complete(self, request: AIRequest) -> dict[str, Any]:
        if self._redis is None:
            # No silent retries: a repeated HINCRBY would count one run twice.
            self._redis = Redis.from_url(self.url, decode_responses=True,
                                         retry=Retry(NoBackoff(), 0))
        try:
            await self._redis.hincrby(self.runs_key, request.task_id, 1)
        except (RedisError, OSError) as exc:  # not counted, so not run: try again later
            raise ServerError(f"could not count the run: {exc!r}") from None
        await asyncio.sleep(self.sleep_s)
        return {"response": f"done {request.task_id}"}


def make() -> CountingBackend:
    return CountingBackend()
