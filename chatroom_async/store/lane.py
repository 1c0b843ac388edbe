"""A dedicated connection for the hottest round trips (submit, claim, finish, and the idle
worker's blocking wait).

redis-py's client checks a connection out of its pool and wraps every script call in a
`Script` object; for a one-round-trip operation that bookkeeping costs about a third of the
time on loopback. A lane keeps one connection of the same pool (same URL, same options) and
sends EVALSHA on it directly. It is used by one caller at a time; a concurrent caller, or
a connection that fails before the command is sent, takes the ordinary pooled path
instead. A failure after sending is raised, not retried: the server may have run the
command, and running a script twice could queue a task twice or take leases nobody uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection, BlockingConnectionPool, ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import BusyLoadingError, NoScriptError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import ProcessorError


def command_fields(args: Sequence[object]) -> list[bytes]:
    """A command's arguments as the bytes a server reads: bytes as they are, str as UTF-8,
    numbers by repr (the queue passes nothing else)."""
    return [arg if isinstance(arg, bytes) else arg.encode() if isinstance(arg, str)
            else repr(arg).encode() for arg in args]


try:  # hiredis formats str, bytes, int and float (by repr) as pack_command does below
    from hiredis import pack_command as _hiredis_pack_command
except ImportError:  # pragma: no cover - without the `fast` extra
    _hiredis_pack_command = None  # type: ignore[assignment]


def pack_command(*args: object, native: bool = True) -> bytes:
    """A command in the Redis protocol (RESP2 array of bulk strings), from the same
    arguments as `command_fields`.

    redis-py's own packer checks and splits every argument; a finish call carries ~15
    arguments per task, where that showed as a quarter of the worker's time. With hiredis
    installed (the `fast` extra) its C packer does the same in about a third of the time;
    `native=False` uses the Python one regardless.
    """
    if native and _hiredis_pack_command is not None:
        return _hiredis_pack_command(args)  # type: ignore[arg-type,no-any-return]
    parts = [b"*%d\r\n" % len(args)]
    parts.extend(b"$%d\r\n%s\r\n" % (len(data), data) for data in command_fields(args))
    return b"".join(parts)


async def _nothing() -> None:
    return None


def without_retries(client: Redis) -> Redis | None:
    """A client over a new pool with `client`'s settings that never sends a command twice;
    None if `client` already does not.

    `Redis(host=...)` retries a command up to 10 times after a connection error (and
    `retry_on_error=[...]` or `retry_on_timeout=True` once), also one the server may already
    have run. For the queue's scripts that is not safe: a submit run twice reports its own
    id as taken, a cancel run twice says it cancelled nothing, a claim run twice takes
    leases nobody uses. `Redis.from_url(url)` and fakeredis clients do not retry and are
    used as they are. The new client does not retry connecting either: during a failover
    calls fail at once, and the caller decides whether to try again. It is its user's to
    close (closing it closes its pool).

    Raises:
        ProcessorError: the client retries and its pool is of a kind this cannot rebuild
            (a Sentinel pool, for one): pass a client made with `retry=Retry(NoBackoff(), 0)`.
    """
    pool = client.connection_pool
    probe = pool.make_connection()  # type: ignore[no-untyped-call]  # an object, no socket
    retries = probe.retry.get_retries()
    if retries == 0:
        return None
    if type(pool) not in (ConnectionPool, BlockingConnectionPool):
        raise ProcessorError(
            f"the Redis client given retries commands ({retries} times) after connection "
            f"errors, which could run a submit or a cancel twice, and its "
            f"{type(pool).__name__} cannot be rebuilt without retries here: pass a client "
            f"made with retry=Retry(NoBackoff(), 0)")
    kwargs = {**pool.connection_kwargs, "retry": Retry(NoBackoff(), 0)}
    if isinstance(pool, BlockingConnectionPool):
        kwargs["timeout"] = pool.timeout
    own_pool = type(pool)(connection_class=pool.connection_class,
                          max_connections=pool.max_connections, **kwargs)
    return Redis.from_pool(own_pool)  # closing the client closes this pool


class Lane:
    """One connection, used by one caller at a time, for EVALSHA calls."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._conn: AbstractConnection | None = None
        self._busy = False
        self._sent = False  # the current call's command has left (or may have left)
        #: How much longer than a blocking command's own wait its reply may take, and how
        #: long a send may wait for room in the socket's buffer.
        self.margin_s = 5.0
        self._closing: set[asyncio.Task[None]] = set()

    async def run(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a registered script with these keys and args; same result as `script(...)`."""
        return await self._call(lambda: self._evalsha(script, keys, args),
                                lambda: script(keys=keys, args=args))

    async def execute(self, *args: Any) -> Any:
        """Run one plain command; same result as `redis.execute_command(*args)`.

        Commands sent on one lane reach the server in the order they were sent, which is
        how a worker's "started" event is published before anything later about the task.
        """
        return await self._call(lambda: self._send(args),
                                lambda: self._redis.execute_command(*args))  # type: ignore[no-untyped-call]

    async def blocking(self, *args: Any, block_s: float) -> Any:
        """Run a command that may block up to `block_s` seconds (BLPOP and the like).

        Its reply is awaited that long and a margin more, whatever the client's socket
        timeout (redis-py 8 sets one of 5 s by default, which would cut a longer wait
        short); past that the connection goes and a timeout is raised. It has no pooled
        fallback (the pool's socket timeout would cut it short): when the lane cannot be
        used it returns None at once, as if the wait had ended.
        """
        return await self._call(lambda: self._send(args, read_timeout=block_s + self.margin_s),
                                _nothing)

    async def blocking_then(self, blocking: Sequence[Any], script: AsyncScript,
                            keys: Sequence[str], args: Sequence[Any], *,
                            block_s: float) -> Any:
        """Run a blocking command, then a script, in one round trip: both leave in one
        write, and the server runs the script the moment the wait ends (a client's next
        command waits behind its blocked one). Returns the script's result; None at once if
        the lane cannot be used (nothing ran). The embedded server takes them one at a
        time, with the same result.
        """
        async def on_lane() -> Any:
            conn = await self._connection()
            if getattr(conn, "send_fields", None) is not None:
                await self._send(blocking, read_timeout=block_s + self.margin_s)
                return await self._evalsha(script, keys, args)
            command = ("EVALSHA", script.sha, len(keys), *keys, *args)
            self._sent = True
            await self._write(conn, pack_command(*blocking) + pack_command(*command))
            async with asyncio.timeout(block_s + self.margin_s):  # raises: the connection goes
                try:
                    await conn.read_response(timeout=math.inf)  # the wait's: dropped
                except ResponseError:  # the script's reply follows: read it, stay in step
                    with contextlib.suppress(ResponseError):
                        await conn.read_response(timeout=math.inf)
                    raise
                try:
                    return await conn.read_response(timeout=math.inf)
                except NoScriptError:  # a restarted or flushed server: the wait is over
                    pass
            return await self._load_and_send(script, command)

        return await self._call(on_lane, _nothing)

    async def _call(self, on_lane: Callable[[], Awaitable[Any]],
                    pooled: Callable[[], Awaitable[Any]]) -> Any:
        if self._busy:
            return await pooled()
        self._busy = True
        self._sent = False
        try:
            return await on_lane()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            self._drop()
            if self._sent and not isinstance(exc, BusyLoadingError):
                # The server may have run it: running it again could queue a task twice
                # or take leases nobody uses, so the caller hears of the failure instead.
                raise
            # Never sent, or refused unrun (a server still loading): the pool tries anew.
            return await pooled()
        except ResponseError:
            raise  # the server answered: the connection is still in step
        except BaseException:
            # Cancelled between sending and reading: the reply would desynchronise the
            # connection, so it goes; the next call opens a fresh one.
            self._drop()
            raise
        finally:
            self._busy = False

    async def _evalsha(self, script: AsyncScript, keys: Sequence[str],
                       args: Sequence[Any]) -> Any:
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            return await self._send(command)
        except NoScriptError:  # a restarted or flushed server: load it and try once more
            return await self._load_and_send(script, command)

    async def _load_and_send(self, script: AsyncScript, command: Sequence[object]) -> Any:
        """After NOSCRIPT (the script ran nothing): load it, then send its EVALSHA again."""
        self._sent = False
        await self._send(("SCRIPT", "LOAD", script.script), changes=False)
        return await self._send(command)

    async def _send(self, args: Sequence[object], read_timeout: float | None = None,
                    *, changes: bool = True) -> Any:
        """Send one command and read its reply. `changes=False` for a command that is
        harmless to run twice (it may then go through the pool after a failure)."""
        conn = await self._connection()
        send_fields = getattr(conn, "send_fields", None)
        if changes:
            self._sent = True
        if send_fields is not None:  # the embedded server takes the fields as they are
            await send_fields(command_fields(args))
        else:
            await self._write(conn, pack_command(*args))
        if read_timeout is None:
            return await conn.read_response()
        async with asyncio.timeout(read_timeout):  # raises, so the connection goes
            if send_fields is not None:
                return await conn.read_response()  # the embedded server has no timeout
            return await conn.read_response(timeout=math.inf)  # none but the one above

    async def _connection(self) -> AbstractConnection:
        """The lane's connection, opened (again) if needed."""
        conn = self._conn
        if conn is None:
            conn = self._conn = self._redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        reader = getattr(conn, "_reader", None)
        if conn.is_connected and isinstance(reader, asyncio.StreamReader) and reader.at_eof():
            await conn.disconnect()  # closed by the server while idle: nothing was sent yet
        if not conn.is_connected:
            await conn.connect()
        return conn

    async def _write(self, conn: AbstractConnection, data: bytes) -> None:
        if isinstance(writer := getattr(conn, "_writer", None), asyncio.StreamWriter):
            # What send_packed_command does, without the task that `asyncio.wait_for`
            # creates around every send when the client has a socket timeout: the kernel
            # takes a command this size at once, and only a full buffer is waited for.
            writer.write(data)
            if writer.transport.get_write_buffer_size():
                async with asyncio.timeout(self.margin_s):
                    await writer.drain()
        else:
            await conn.send_packed_command(data, check_health=False)

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
