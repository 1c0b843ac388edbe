"""A dedicated connection for the hottest round trips (submit, claim, finish).

redis-py's client checks a connection out of its pool and wraps every script call in a
`Script` object; for a one-round-trip operation that bookkeeping costs about a third of the
time on loopback. A lane keeps one connection of the same pool (same URL, same options) and
sends EVALSHA on it directly. It is used by one caller at a time; a concurrent caller, or
any connection trouble, falls back to the ordinary pooled path, so a lane never changes
what a call does, only how fast it goes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


class Lane:
    """One connection, used by one caller at a time, for EVALSHA calls."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._conn: AbstractConnection | None = None
        self._busy = False
        self._closing: set[asyncio.Task[None]] = set()

    async def run(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a registered script with these keys and args; same result as `script(...)`."""
        if self._busy:
            return await script(keys=keys, args=args)
        self._busy = True
        try:
            return await self._run(script, keys, args)
        except (RedisConnectionError, RedisTimeoutError, OSError):
            self._drop()
            return await script(keys=keys, args=args)  # the pool reconnects and retries
        except ResponseError:
            raise  # the server answered: the connection is still in step
        except BaseException:
            # Cancelled between sending and reading: the reply would desynchronise the
            # connection, so it goes; the next call opens a fresh one.
            self._drop()
            raise
        finally:
            self._busy = False

    async def _run(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        conn = self._conn
        if conn is None:
            conn = self._conn = self._redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
            return await conn.read_response()
        except NoScriptError:  # a restarted or flushed server: load it and try once more
            await conn.send_command("SCRIPT", "LOAD", script.script)
            await conn.read_response()
            await conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
            return await conn.read_response()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            closing = asyncio.ensure_future(conn.disconnect(nowait=True))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close the connection (the pool's own connections are the client's business)."""
        self._drop()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
