"""The way out of a worker pool: outcomes and "started" events wait here and leave in
batches, one script call each, which records up to ten outcomes and, when the pool is
full, claims tasks for the places they free in the same round trip.

Events about a task leave this process in order: "started" goes out in the message of the
call that records the task's end, ahead of it, or in a message before it. The outbox owns
no runs and does not know its pool: the pool drives it (`wait`, then `drain`), says how many
places each call may claim for, and settles what each call returns (`Sent`) before the next.
Each call also carries what the pool's held count needs (`tally.py`); a correction that
no call carries goes on its own (`correct`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

from ..clock import Clock
from ..settings import ProcessorSettings
from ..store.queue import ClaimResult, Emit, Outcome, TaskQueue
from .slots import SlotLedger
from .tally import HeldTally, Plan

log = logging.getLogger("chatroom_async.worker")  # the pool's logger

# Outcomes recorded per call. Small, so that the first freed slots of a burst refill while
# the rest of it is still being recorded: measured with benchmarks/run.py, I/O efficiency
# (100 tasks of 0.1 s in flight) was 96.1 % at 500, 96.4 % at 25, 97.0-97.1 % at 10, and
# no better at 5; no-op throughput fell from ~10,000/s to ~7,200/s at 10 (batches that
# grow within a flush kept the throughput but lost the efficiency).
_MAX_FINISH_BATCH = 10


@dataclass(slots=True)
class Sent:
    """One script call's worth of outcomes, after the call: what the pool settles next.

    Attributes:
        outcomes: what the call tried to record, in order.
        recorded: for each, whether it was recorded (the lease was still this worker's).
        claimed: the tasks the same call claimed (None when it claimed nothing).
        now: the time the call was made at.
    """

    outcomes: list[Outcome]
    recorded: list[bool]
    claimed: ClaimResult | None
    now: float
    _futures: list[asyncio.Future[bool]]

    def wake(self) -> None:
        """Tell each outcome's submitter whether it was recorded (once; idempotent)."""
        for fut, ok in zip(self._futures, self.recorded, strict=True):
            if not fut.done():
                fut.set_result(ok)


class Outbox:
    """Batches the outcomes and "started" events of one pool into script calls.

    Args:
        queue: the Redis layer.
        slots: the pool's slot ledger, to reserve the places a call claims for.
        tally: the pool's held count, which each call keeps up to date.
        settings: leases, publishing, delivery limit.
        clock: time source.
        origin: this process's id, named in every event message.
        worker_id: the pool's, for claims and logs.
    """

    def __init__(self, *, queue: TaskQueue, slots: SlotLedger, tally: HeldTally,
                 settings: ProcessorSettings, clock: Clock, origin: str,
                 worker_id: str) -> None:
        self.queue, self.slots, self.settings, self.clock = queue, slots, settings, clock
        self.tally = tally
        self.origin, self.worker_id = origin, worker_id
        self._outcomes: list[tuple[Outcome, asyncio.Future[bool]]] = []
        # "started" events (built when sent), to leave ahead of any outcome, and the futures
        # told once they left
        self._announce: list[tuple[Callable[[], Emit], asyncio.Future[None]]] = []
        self._ready = asyncio.Event()
        # When the calls' claims must next promote due retries and reclaim expired leases:
        # at the earliest known due time, and at least every `_sweep_every_s`.
        self._sweep_at = float("-inf")
        self._sweep_every_s = min(1.0, settings.lease_s / 4)

    def announce(self, event: Callable[[], Emit]) -> asyncio.Future[None]:
        """Send a "started" event, built by `event()` when it leaves, with the next call (or
        on its own when none comes); the future returned is done once it was sent (or could
        not be)."""
        sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._announce.append((event, sent))
        self._ready.set()
        return sent

    async def submit(self, outcome: Outcome) -> bool:
        """Record an outcome with the next call; True if it was recorded (the lease was
        still this worker's and Redis answered)."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._outcomes.append((outcome, fut))
        self._ready.set()
        return await fut

    def correct(self) -> None:
        """Send what the held count needs with the next call, or on its own when none
        comes (`tally.py`)."""
        if self.tally.pending():
            self._ready.set()

    def swept(self, now: float, next_due: float | None) -> None:
        """After a sweep (by any claim): the next one when something falls due, or in a
        while anyway (other processes' retries and dead workers' leases are not announced
        to busy workers)."""
        self._sweep_at = now + self._sweep_every_s
        if next_due is not None:
            self._sweep_at = min(self._sweep_at, next_due)

    async def wait(self) -> None:
        """Return once something waits to be sent."""
        await self._ready.wait()
        self._ready.clear()

    async def drain(self, places: Callable[[list[Outcome]], int]) -> AsyncGenerator[Sent, None]:
        """Send everything waiting, a batch per call, yielding each call's `Sent`.

        `places(batch)` says for how many places the call may claim (0: record only). The
        caller settles a `Sent` and wakes its submitters before asking for the next; an
        abandoned `Sent` wakes them anyway.
        """
        corrected = False  # a correction on its own goes once per drain at most
        while self._announce or self._outcomes or (not corrected and self.tally.pending()):
            if not self._outcomes:
                if self._announce:
                    await self._publish_announcements()
                else:
                    corrected = True
                    await self._correct()
                continue
            batch = self._outcomes[:_MAX_FINISH_BATCH]
            del self._outcomes[:_MAX_FINISH_BATCH]
            started, self._announce = self._announce, []
            outcomes = [o for o, _ in batch]
            claimed: ClaimResult | None = None
            now = self.clock.now()
            try:
                recorded, claimed = await self._record(outcomes, now, [e() for e, _ in started],
                                                       places(outcomes))
            except Exception as exc:  # the leases will expire and the tasks run again
                log.error("worker %s: could not record %d outcomes: %r", self.worker_id,
                          len(batch), exc)
                recorded = [False] * len(batch)
                # The "started" events are dropped, not sent again: the call may have
                # published them, and a second copy would arrive after the task's end.
            finally:
                _tell(started)
            sent = Sent(outcomes, recorded, claimed, now, [f for _, f in batch])
            try:
                yield sent
            finally:
                sent.wake()

    async def _publish_announcements(self) -> None:
        started, self._announce = self._announce, []
        try:
            await self.queue.emit([e() for e, _ in started], lane="finish",
                                  publish=self.settings.publish_events)
        except Exception as exc:  # events are best effort; the records are the truth
            log.error("worker %s: could not send started events: %r", self.worker_id, exc)
        finally:
            _tell(started)

    async def _correct(self) -> None:
        """Send what the held count needs on its own (no call carried it)."""
        plan = self.tally.plan()
        try:
            if plan.held:
                await self.queue.adjust_held(self.worker_id, plan.held)
        except Exception as exc:  # noqa: BLE001 - a statistic (`tally.py` says what follows)
            log.warning("worker %s: could not update its held count: %r", self.worker_id, exc)
            self.tally.failed(plan)
        else:
            self.tally.sent(plan)

    async def _record(self, outcomes: list[Outcome], now: float, started: list[Emit],
                      places: int) -> tuple[list[bool], ClaimResult | None]:
        """Record a batch (publishing `started` events ahead of its own); with places to
        fill, claim for them in the same call."""
        for o in outcomes:  # our own retries: sweep when the first of them is due
            if o.due is not None:
                self._sweep_at = min(self._sweep_at, o.due)
        plan = self.tally.plan(len(outcomes), max(0, places))
        try:
            recorded, result = await self._call(outcomes, now, started, places, plan)
        except BaseException:
            self.tally.failed(plan)
            raise
        self.tally.sent(plan, len(result.claimed) if result is not None else 0)
        return recorded, result

    async def _call(self, outcomes: list[Outcome], now: float, started: list[Emit],
                    places: int, plan: Plan) -> tuple[list[bool], ClaimResult | None]:
        publish = self.settings.publish_events
        if places <= 0:
            return await self.queue.finish(outcomes, publish=publish, started=started,
                                           worker_id=self.worker_id, held=plan.held), None
        sweep = now >= self._sweep_at
        with self.slots.claim(places):  # until just before the pool places what came back
            recorded, result = await self.queue.finish_and_claim(
                outcomes, publish=publish, now=now,
                lease_s=self.settings.lease_s, max_count=places, worker_id=self.worker_id,
                extra_deliveries=self.settings.extra_deliveries, sweep=sweep, started=started,
                held=plan.held, starts=plan.starts)
        if sweep:
            self.swept(now, result.next_due)
        return recorded, result


def _tell(started: list[tuple[Callable[[], Emit], asyncio.Future[None]]]) -> None:
    """The runs waiting for their "started" event to leave may write progress now."""
    for _, sent in started:
        if not sent.done():
            sent.set_result(None)
