"""The follow reader: one blocking XREAD per process over the event streams of every task
it follows, handing each follower the entries after its own cursor.

A process that follows tasks holds one connection for them, whatever their number. Adding a
follower wakes the blocked read through the process's control stream, so that the next read
includes the new task's stream. After a lost connection the read starts again from each
follower's last cursor: the streams keep what was sent meanwhile, so nothing is lost and
nothing is handed out twice.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .keys import Keys
from .lane import Lane

log = logging.getLogger("chatroom_async.follow")

# The blocking read returns this often when nothing happens (a heartbeat, not a poll: any
# event wakes it at once); a connection that died silently is noticed then.
_BLOCK_MS = 30_000
_BATCH = 500  # entries per stream per read


class Follower:
    """One follower of one task: the entries after `last`, in order, on `queue`.

    A `None` in the queue means the reader stopped (the processor is closing).
    """

    def __init__(self, task_id: str, after: int) -> None:
        self.task_id = task_id
        self.last = after
        self.queue: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()


class FollowReader:
    """Reads the streams of the followed tasks of one namespace for one process.

    Args:
        redis: the client (its pool gives the reader's own connection).
        keys: the namespace's key names.
        origin: this process's id (names its control stream).
    """

    def __init__(self, redis: Redis, keys: Keys, origin: str) -> None:
        self.redis, self.keys = redis, keys
        self.control = keys.follow_control(origin)
        self._lane = Lane(redis)
        self._followers: dict[str, list[Follower]] = {}
        self._task: asyncio.Task[None] | None = None
        # From the start of the control stream, not "$": a wake that reaches the server
        # before the first read does (its connection still being set up) is then still
        # seen, where "$" would miss it and leave the new follower unread until the
        # heartbeat. At worst the first read returns at once on an earlier wake.
        self._control_last = "0-0"
        self.lost_connections = 0

    def add(self, task_id: str, after: int) -> Follower:
        """Follow a task from cursor `after`; the reader includes it from its next read."""
        follower = Follower(task_id, after)
        self._followers.setdefault(task_id, []).append(follower)
        if self._task is None:
            self._task = asyncio.create_task(self._read_loop(), name="chatroom_async.follow")
        return follower

    async def wake(self) -> None:
        """Make a blocked read start again with the current followers."""
        if self._task is not None:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xadd(self.control, {"w": "1"}, maxlen=1, approximate=False)
                pipe.expire(self.control, 3600)
                await pipe.execute()

    def remove(self, follower: Follower) -> None:
        followers = self._followers.get(follower.task_id, [])
        if follower in followers:
            followers.remove(follower)
        if not followers:
            self._followers.pop(follower.task_id, None)

    async def close(self) -> None:
        """Stop reading; every follower gets None."""
        if self._task is not None:
            # Cancelled again until it ends: on a real Redis a cancel that lands while the
            # reader's connection is being set up was seen to be absorbed (redis-py 8.2),
            # leaving the read blocked for up to `_BLOCK_MS`.
            while not self._task.done():
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=0.1)
            self._task = None
        await self._lane.close()
        for followers in self._followers.values():
            for follower in followers:
                follower.queue.put_nowait(None)
        self._followers.clear()
        try:
            await self.redis.delete(self.control)
        except (RedisError, OSError) as exc:  # it expires anyway
            log.debug("could not delete %s: %r", self.control, exc)

    async def _read_loop(self) -> None:
        delay = 0.05
        while True:
            try:
                reply = await self._read()
                delay = 0.05
            except (RedisError, OSError) as exc:
                self.lost_connections += 1
                log.warning("follow reader: connection lost (%r); reading again in %.2f s",
                            exc, delay)
                await asyncio.sleep(delay)  # backoff before reconnecting, not a poll
                delay = min(2 * delay, 2.0)
                continue
            self._deliver(reply)

    async def _read(self) -> Any:
        streams: list[str] = [self.control]
        ids: list[str] = [self._control_last]
        for task_id, followers in self._followers.items():
            streams.append(self.keys.stream(task_id))
            ids.append(f"0-{min(f.last for f in followers)}")
        return await self._lane.blocking(
            "XREAD", "COUNT", _BATCH, "BLOCK", _BLOCK_MS, "STREAMS", *streams, *ids,
            block_s=_BLOCK_MS / 1000)

    def _deliver(self, reply: Any) -> None:
        if not reply:
            return
        items = reply.items() if isinstance(reply, dict) else reply
        for key, entries in items:
            key = key.decode() if isinstance(key, bytes) else str(key)
            if key == self.control:
                if entries:
                    self._control_last = _text(entries[-1][0])
                continue
            task_id = key[len(self.keys.stream_prefix):]
            for entry_id, fields in entries:
                cursor = int(_text(entry_id).rpartition("-")[2])
                envelope = _field(fields, "e")
                for follower in self._followers.get(task_id, ()):
                    if cursor > follower.last:
                        follower.last = cursor
                        follower.queue.put_nowait((cursor, envelope))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _field(fields: Any, name: str) -> str:
    """A stream entry's field, from a flat [name, value, ...] list or a dict."""
    if isinstance(fields, dict):
        return _text(fields.get(name, fields.get(name.encode(), "")))
    flat = [_text(x) for x in fields]
    pairs = dict(zip(flat[::2], flat[1::2], strict=False))
    return pairs.get(name, "")
