"""The fetcher of a worker pool: claims as many tasks as the pool has free slots, in one
script call, and blocks on Redis when there is nothing to claim (no polling).

With the system clock an idle fetcher's next claim leaves with its blocking wait, on the same
connection (`TaskQueue.wait_then_claim`), and the server runs it the moment a wake-up ends
the wait, on the server's clock shifted to this process's (measured by every plain claim),
so its leases are as long as configured: a task submitted to an idle worker starts one round
trip sooner. While every slot is busy the fetcher waits for one to free and the outbox's
calls claim for the places their outcomes free (`full`): a full pool takes no wake-up token
meant for an idle worker elsewhere.

The fetcher decides when to claim and how long to wait; what a claim brought is the pool's
business (`take`, and `dead` for each task the claim script failed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from ..clock import Clock, SystemClock
from ..settings import ProcessorSettings
from ..store.queue import ClaimResult, TaskQueue
from .outbox import Outbox
from .slots import SlotLedger
from .tally import HeldTally

log = logging.getLogger("chatroom_async.worker")  # the pool's logger


class Fetcher:
    """Claims for one pool from a task of its own, from `start` until `stop`.

    Args:
        queue: the Redis layer.
        slots: the pool's slot ledger: how many places are free, and the claims in flight.
        tally: the pool's held count: how many of a claim's tasks may start at once.
        outbox: told when a claim swept due retries and expired leases.
        settings: leases, delivery limit, longest idle wait.
        clock: time source (virtual under simulation).
        worker_id: the pool's.
        take: receives each claim's result and the time it was made; starts what it can.
        dead: tells waiters of one task the claim script failed.
    """

    def __init__(self, *, queue: TaskQueue, slots: SlotLedger, tally: HeldTally,
                 outbox: Outbox, settings: ProcessorSettings, clock: Clock, worker_id: str,
                 take: Callable[[ClaimResult, float], None],
                 dead: Callable[[str], Awaitable[None]]) -> None:
        self.queue, self.slots, self.outbox, self.tally = queue, slots, outbox, tally
        self.settings, self.clock, self.worker_id = settings, clock, worker_id
        self._take, self._dead = take, dead
        self.full = False  # waiting for a free slot: the outbox claims for the places it frees
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        # Set when a claim found nothing to do: the next one waits for work first, for at
        # most this long. And this clock minus the server's, from the latest plain claim.
        self._idle_wait: float | None = None
        self._clock_offset: float | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="chatroom_async.fetch")

    async def stop(self) -> None:
        """Claim no more: end a blocking wait (a control message to this worker), then wait
        for the loop to end. A claim that rode behind the wait may still bring tasks to
        `take` (a stopping pool hands them back)."""
        self._stopping = True
        try:
            await self.queue.poke(self.worker_id)
        except Exception as exc:  # noqa: BLE001 - the wait ends at its timeout instead
            log.error("worker %s: could not wake the fetcher while stopping: %r",
                      self.worker_id, exc)
        self.slots.freed.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while not self._stopping:
            free = self.slots.free()
            # While every slot is busy the outbox fills the places the runs' outcomes free,
            # held ones included: the fetcher waits (and takes no wake-up token an idle
            # worker elsewhere waits for). A slot left open beside held tasks waits for a
            # task ready ahead of them: the fetcher claims it if a place is free (the
            # outcome's own claim may come too; places bound what both take).
            if free <= 0 or not self.slots.slot_open():
                self._idle_wait = None  # once a slot frees, claim at once
                self.slots.freed.clear()
                self.full = True
                try:
                    await self.slots.freed.wait()
                finally:
                    self.full = False
                continue
            try:
                await self._fetch_once(free)
            except Exception:  # Redis down or a bug: log, pause, keep the worker alive
                log.exception("worker %s: claim failed; retrying in 1 s", self.worker_id)
                await self.clock.sleep(1.0)

    async def _fetch_once(self, free: int) -> None:
        wait, self._idle_wait = self._idle_wait, None
        now = self.clock.now()
        reset = self.tally.resets(not self.slots.held and self.slots.occupied == 0
                                  and self.slots.claiming == 0, ended=self.slots.placed)
        starts = self.tally.reserve(free)
        with self.slots.claim(free):
            try:
                if wait is None:
                    result = await self.queue.claim(
                        now=now, lease_s=self.settings.lease_s, max_count=free,
                        worker_id=self.worker_id, starts=starts, reset_held=reset,
                        extra_deliveries=self.settings.extra_deliveries)
                    self._note_clock(now, result)
                else:
                    result = await self._claim_after_wait(wait, free, starts, reset)
                    now = self.clock.now()
            except BaseException:
                self.tally.failed()
                raise
        self.tally.claimed(starts, len(result.claimed))
        self.outbox.swept(now, result.next_due)
        self._take(result, now)  # before any await: the slots stay accounted for
        for task_id in result.dead:
            await self._dead(task_id)
        if result.remaining or len(result.claimed) == free or self.slots.held:
            # More may be ready (also when everything popped was dead): claim again as
            # soon as a slot is free. A pool holding tasks has no slot for a new task: it
            # must not take the one wake-up token an idle worker elsewhere is waiting for
            # (nor must one with every slot busy: `_loop` drops its idle wait).
            return
        wait = self.settings.max_idle_wait_s
        if result.next_due is not None:
            wait = min(wait, max(0.0, result.next_due - now) + 0.001)
        if not self._stopping:
            self._idle_wait = wait  # the next claim waits for work first

    async def _claim_after_wait(self, wait: float, free: int, starts: int | None,
                                reset: bool) -> ClaimResult:
        """Wait for work (a wake-up token, a control message or `wait` seconds), then
        claim. With the system clock both go in one round trip (`wait_then_claim`): the
        claim runs in the server the moment the wait ends, so a task submitted to an idle
        worker starts one round trip sooner."""
        # Tasks the last claim launched take their first step before this call is sent:
        # the send can cost a busy loop a tenth of a millisecond.
        await asyncio.sleep(0)
        if self._stopping:
            return ClaimResult([], [], None)
        try:
            if self._clock_offset is not None:
                woke = await self.queue.wait_then_claim(
                    worker_id=self.worker_id, block_s=wait, offset=self._clock_offset,
                    lease_s=self.settings.lease_s, max_count=free, starts=starts,
                    reset_held=reset, extra_deliveries=self.settings.extra_deliveries)
                if woke is not None:
                    return woke
            else:
                await self.queue.wait_for_work(self.worker_id, wait)
        except (RedisError, OSError) as exc:  # the claim below shows if Redis is gone
            log.warning("worker %s: idle wait ended early: %r", self.worker_id, exc)
            self.tally.failed()  # its claim may have run
        if self._stopping:
            return ClaimResult([], [], None)
        now = self.clock.now()
        result = await self.queue.claim(now=now, lease_s=self.settings.lease_s, max_count=free,
                                        worker_id=self.worker_id, starts=starts,
                                        reset_held=reset,
                                        extra_deliveries=self.settings.extra_deliveries)
        self._note_clock(now, result)
        return result

    def _note_clock(self, sent: float, result: ClaimResult) -> None:
        """Estimate this clock minus the server's from a claim sent at `sent` (the system
        clock only: a virtual clock has no relation to the server's)."""
        if result.server_time is not None and isinstance(self.clock, SystemClock):
            self._clock_offset = (sent + self.clock.now()) / 2 - result.server_time
