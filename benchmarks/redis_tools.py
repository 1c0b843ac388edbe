"""Redis helpers for the runner: finding and deleting our keys, and measuring memory.

Every key a run creates has the run id in its name, so SCAN MATCH `*<run id>*` finds
exactly our keys in our database; nothing else is ever deleted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import redis.asyncio as aioredis

SCAN_COUNT = 1000


async def scan_keys(client: aioredis.Redis, fragment: str) -> AsyncIterator[bytes]:
    """Every key whose name contains `fragment` (which must not hold glob characters)."""
    if any(ch in fragment for ch in "*?[]\\"):
        raise ValueError(f"key fragment {fragment!r} has glob characters")
    async for key in client.scan_iter(match=f"*{fragment}*", count=SCAN_COUNT):
        yield key


async def delete_matching(client: aioredis.Redis, fragment: str) -> int:
    """Delete (UNLINK) every key whose name contains `fragment`; return how many."""
    batch: list[bytes] = []
    deleted = 0
    async for key in scan_keys(client, fragment):
        batch.append(key)
        if len(batch) >= SCAN_COUNT:
            deleted += await client.unlink(*batch)
            batch.clear()
    if batch:
        deleted += await client.unlink(*batch)
    return deleted


async def memory_usage(client: aioredis.Redis, fragment: str) -> tuple[int, int]:
    """(total MEMORY USAGE ... SAMPLES 0 in bytes, number of keys) over our keys."""
    total = count = 0
    async for key in scan_keys(client, fragment):
        total += await client.memory_usage(key, samples=0) or 0
        count += 1
    return total, count


async def used_memory(client: aioredis.Redis) -> int:
    """The server's INFO memory used_memory (bytes; server-wide, so other clients show)."""
    info = await client.info("memory")
    return int(info["used_memory"])
