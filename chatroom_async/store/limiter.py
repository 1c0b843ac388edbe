"""The provider's limits, shared through Redis by every worker of a namespace.

One script (`lua/limit.lua`) decides atomically when a call may go; this module only waits
as it says: for its reserved turn at the rates (a timed wait of exactly that long; turns are
handed out in the order they are asked for), or for a call slot (a blocking pop on a list
that every release pushes to, so a freed slot wakes a waiting worker at once; no polling).
One blocking pop per process serves all of that process's waiting calls, first come first
served.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from redis.asyncio import Redis

from ..clock import Clock
from ..settings import ProviderLimits
from .keys import Keys
from .lane import Lane
from .queue import SOURCES

log = logging.getLogger("chatroom_async.worker")

_GRANTED, _PAUSED, _SLOTS = 0, 1, 2
# The longest single blocking pop of the slot listener: it ends this long after the last
# local waiter left, and a wait is re-checked against the script at least this often.
_LISTEN_S = 1.0


class ProviderLimiter:
    """Waits for the provider's limits before each AI call, across processes.

    Args:
        redis: the processor's client.
        keys: the namespace's key names.
        limits: what the provider allows.
        clock: time source; the script compares times on it (virtual under simulation).
    """

    def __init__(self, redis: Redis, keys: Keys, limits: ProviderLimits, clock: Clock) -> None:
        self.keys, self.limits, self.clock = keys, limits, clock
        self._script = redis.register_script(SOURCES["limit"])
        self._keys = [keys.provider, keys.provider_calls, keys.provider_free]
        self._lane = Lane(redis)
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._listener: asyncio.Task[None] | None = None
        self.waits = 0  # times a call had to wait (for a dashboard or a benchmark)

    async def acquire(self, call_id: str, tokens: int) -> None:
        """Return once a call of `tokens` tokens may go; it then holds a call slot until
        `release(call_id)` (or its lease runs out).

        First its turn at the rates: the script gives it a place in line and the wait until
        then, which it sleeps (callers go in the order they asked). Then a call slot: taken
        at once if one is free, else waited for (a release anywhere wakes a waiter).
        """
        lim = self.limits
        while lim.rpm or lim.tpm:
            kind, wait = await self._script(keys=self._keys, args=[
                "reserve", repr(self.clock.now()), tokens, lim.rpm or 0, lim.tpm or 0])
            seconds = float(wait)
            if seconds > 0:
                self.waits += 1
                await self.clock.sleep(seconds)
            if int(kind) == _GRANTED:
                break  # paused: ask again once the pause is over
        while True:
            kind, wait = await self._script(keys=self._keys, args=[
                "slot", repr(self.clock.now()), call_id, lim.max_concurrency or 0,
                repr(lim.call_lease_s)])
            if int(kind) == _GRANTED:
                return
            self.waits += 1
            seconds = max(0.001, float(wait))
            if int(kind) == _PAUSED:
                await self.clock.sleep(seconds)
            else:
                await self._slot_freed(min(seconds, _LISTEN_S))

    async def release(self, call_id: str) -> None:
        """The call ended: free its slot (and wake a worker waiting for one)."""
        await self._script(keys=self._keys, args=[
            "release", repr(self.clock.now()), call_id, self.limits.max_concurrency or 0])
        self._wake_one()  # a waiter of this process need not wait for the pop

    async def pause(self, seconds: float) -> None:
        """The provider said to wait (a 429's retry_after): no worker calls it before then."""
        await self._script(keys=self._keys, args=[
            "pause", repr(self.clock.now()), repr(self.clock.now() + seconds)])

    async def close(self) -> None:
        """Stop the slot listener and close its connection."""
        for fut in self._waiters:
            if not fut.done():
                fut.cancel()
        self._waiters.clear()
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        await self._lane.close()

    async def _slot_freed(self, at_most_s: float) -> None:
        """Wait until a release anywhere frees a call slot, or `at_most_s` passes."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(),
                                                 name="chatroom_async.provider_slots")
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout=at_most_s)
        except TimeoutError:
            pass
        finally:
            if fut in self._waiters:
                self._waiters.remove(fut)

    async def _listen(self) -> None:
        """Pop release wake-ups while this process has calls waiting for a slot."""
        while self._waiters:
            try:
                got = await self._lane.blocking("BLPOP", self.keys.provider_free,
                                                repr(_LISTEN_S), block_s=_LISTEN_S)
            except Exception as exc:  # noqa: BLE001 - waiters re-check the script anyway
                log.warning("provider slot listener: %r", exc)
                await self.clock.sleep(_LISTEN_S)
                continue
            if got is not None:
                self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
