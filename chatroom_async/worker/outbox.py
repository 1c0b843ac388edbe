"""The way out of a worker pool: outcomes and "started" events wait here and leave in
batches, one script call each, which records up to ten outcomes and, when the pool is
full, claims tasks for the places they free in the same round trip.

Events about a task leave this process in order: "started" goes out in the message of the
call that records the task's end, ahead of it, or in a message before it. The outbox owns
no runs: its pool says which run an outcome ends, settles it, and starts what was claimed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from ..clock import Clock
from ..events import message_json
from ..settings import ProcessorSettings
from ..store.queue import ClaimResult, Outcome, TaskQueue
from .slots import Run, SlotLedger

log = logging.getLogger("chatroom_async.worker")  # the pool's logger, as before the move

# Outcomes recorded per call. Small, so that the first freed slots of a burst refill while
# the rest of it is still being recorded: measured with benchmarks/run.py, I/O efficiency
# (100 tasks of 0.1 s in flight) was 96.1 % at 500, 96.4 % at 25, 97.0-97.1 % at 10, and
# no better at 5; no-op throughput fell from ~10,000/s to ~7,200/s at 10 (batches that
# grow within a flush kept the throughput but lost the efficiency).
_MAX_FINISH_BATCH = 10


class Pool(Protocol):
    """What the outbox needs of its worker pool."""

    slots: SlotLedger

    def run_of(self, outcome: Outcome) -> Run | None:
        """The run this outcome ends, if it still holds its place."""

    def settle(self, run: Run) -> None:
        """Give the run's place (and slot) back: its outcome is settled."""

    def claims_with_outcomes(self) -> bool:
        """Whether the calls that record outcomes should claim for the places they free."""

    async def adopt(self, result: ClaimResult, now: float) -> None:
        """Start (or, when stopping, hand back) what such a call claimed."""


class Outbox:
    """Batches the outcomes and "started" events of one pool into script calls.

    Args:
        pool: whose runs the outcomes end.
        queue: the Redis layer.
        settings: leases, publishing, delivery limit.
        clock: time source.
        origin: this process's id, named in every event message.
        worker_id: the pool's, for claims and logs.
    """

    def __init__(self, pool: Pool, *, queue: TaskQueue, settings: ProcessorSettings,
                 clock: Clock, origin: str, worker_id: str) -> None:
        self.pool, self.queue, self.settings, self.clock = pool, queue, settings, clock
        self.origin, self.worker_id = origin, worker_id
        self._outcomes: list[tuple[Outcome, asyncio.Future[bool]]] = []
        self._announce: list[str] = []  # "started" events, to leave ahead of any outcome
        self._ready = asyncio.Event()
        # When the calls' claims must next promote due retries and reclaim expired leases:
        # at the earliest known due time, and at least every `_sweep_every_s`.
        self._sweep_at = float("-inf")
        self._sweep_every_s = min(1.0, settings.lease_s / 4)

    def announce(self, event: str) -> None:
        """Send a "started" event with the next call (or on its own when none comes)."""
        self._announce.append(event)
        self._ready.set()

    async def submit(self, outcome: Outcome) -> bool:
        """Record an outcome with the next call; True if it was recorded (the lease was
        still this worker's and Redis answered)."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._outcomes.append((outcome, fut))
        self._ready.set()
        return await fut

    def swept(self, now: float, next_due: float | None) -> None:
        """After a sweep (by any claim): the next one when something falls due, or in a
        while anyway (other processes' retries and dead workers' leases are not announced
        to busy workers)."""
        self._sweep_at = now + self._sweep_every_s
        if next_due is not None:
            self._sweep_at = min(self._sweep_at, next_due)

    async def run(self) -> None:
        """Send what comes, as it comes (the pool's flusher task)."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            await self.flush()

    async def flush(self) -> None:
        """Send everything waiting, a batch per call."""
        while self._announce or self._outcomes:
            if not self._outcomes:
                await self._publish_announcements()
                continue
            batch = self._outcomes[:_MAX_FINISH_BATCH]
            del self._outcomes[:_MAX_FINISH_BATCH]
            started, self._announce = self._announce, []
            claimed: ClaimResult | None = None
            now = self.clock.now()
            try:
                recorded, claimed = await self._record([o for o, _ in batch], now, started)
            except Exception as exc:  # the leases will expire and the tasks run again
                log.error("worker %s: could not record %d outcomes: %r", self.worker_id,
                          len(batch), exc)
                recorded = [False] * len(batch)
                # The "started" events are dropped, not sent again: the call may have
                # published them, and a second copy would arrive after the task's end.
            for (outcome, fut), ok in zip(batch, recorded, strict=True):
                run = self.pool.run_of(outcome)
                if run is not None:
                    self.pool.settle(run)
                if not fut.done():
                    fut.set_result(ok)
            if claimed is not None:  # after the finished runs are woken: events stay in order
                await self.pool.adopt(claimed, now)

    async def _publish_announcements(self) -> None:
        started, self._announce = self._announce, []
        try:
            await self.queue.publish_event(message_json(self.origin, started))
        except Exception as exc:  # events are best effort; the records are the truth
            log.error("worker %s: could not publish started events: %r", self.worker_id, exc)

    async def _record(self, outcomes: list[Outcome], now: float,
                      started: list[str]) -> tuple[list[bool], ClaimResult | None]:
        """Record a batch (publishing `started` events ahead of its own); when the pool is
        full, claim for the freed places in the same call."""
        publish = self.settings.publish_events
        slots = self.pool.slots
        freeing = sum(1 for o in outcomes if self.pool.run_of(o) is not None)
        places = slots.free() + freeing
        for o in outcomes:  # our own retries: sweep when the first of them is due
            if o.due is not None:
                self._sweep_at = min(self._sweep_at, o.due)
        if not (self.pool.claims_with_outcomes() and places > 0):
            return await self.queue.finish(outcomes, origin=self.origin,
                                           publish=publish, started=started), None
        sweep = now >= self._sweep_at
        with slots.claim(places):  # until just before flush() places what came back
            recorded, result = await self.queue.finish_and_claim(
                outcomes, origin=self.origin, publish=publish, now=now,
                lease_s=self.settings.lease_s, max_count=places, worker_id=self.worker_id,
                extra_deliveries=self.settings.extra_deliveries, sweep=sweep, started=started)
        if sweep:
            self.swept(now, result.next_due)
        return recorded, result
