"""The response cache: an identical request is answered without calling the backend.

The key is a digest of the request type and the canonical JSON of its data; entries
expire after their own TTL. Off unless `ProcessorSettings.cache_ttl_s` is set.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from redis.asyncio import Redis

from .keys import Keys


def request_digest(request_type: str, request_data: dict[str, Any]) -> str:
    """A stable digest of a request: same type and data (any key order) give the same one."""
    canonical = orjson.dumps([request_type, request_data], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:32]


class ResponseCache:
    """Cached results in Redis, one string key each."""

    def __init__(self, redis: Redis, keys: Keys, ttl_s: float) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.hits = 0
        self.misses = 0

    async def get(self, request_type: str, request_data: dict[str, Any]) -> dict[str, Any] | None:
        raw = await self.redis.get(self.keys.cache(request_digest(request_type, request_data)))
        if raw is None:
            self.misses += 1
            return None
        self.hits += 1
        result: dict[str, Any] = orjson.loads(raw)
        return result

    async def put(self, request_type: str, request_data: dict[str, Any],
                  result: dict[str, Any]) -> None:
        await self.redis.set(self.keys.cache(request_digest(request_type, request_data)),
                             orjson.dumps(result), px=self.ttl_ms)
