"""The leases of one worker pool: renewed while their tasks run, the lost ones reported to
the pool, and the pool's entry among the namespace's workers kept alive with them.

A task claimed by this worker is leased until a deadline; another worker may take it once
the deadline passes. The keeper extends every lease the pool still holds every
`renew_every_s`, and, in the same tick, the pool's registration (`get_stats`: `workers`,
`worker_slots`), so a pool counts as alive exactly as long as its leases do. It decides
nothing about runs: the pool says which leases it holds and what to do with a lost one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from redis.exceptions import RedisError

from ..clock import Clock
from ..settings import ProcessorSettings
from ..store.queue import TaskQueue
from .loops import PatientLoop

log = logging.getLogger("chatroom_async.worker")  # the pool's logger


class LeaseKeeper:
    """Renews one pool's leases and registration from a task of its own.

    Args:
        queue: the Redis layer.
        settings: `lease_s` and `renew_every_s`.
        clock: time source (virtual under simulation).
        worker_id: the pool's.
        slots: the pool's concurrency, registered with it.
        held: returns the leases the pool holds now, task_id -> token.
        lost: called with (task_id, token) for each lease renewal found lost.
    """

    def __init__(self, *, queue: TaskQueue, settings: ProcessorSettings, clock: Clock,
                 worker_id: str, slots: int, held: Callable[[], dict[str, str]],
                 lost: Callable[[str, str], None]) -> None:
        self.queue, self.settings, self.clock = queue, settings, clock
        self.worker_id, self.slots = worker_id, slots
        self._held, self._lost = held, lost
        self._loop = PatientLoop(lambda: clock.sleep(settings.renew_every_s), self._tick,
                                 "chatroom_async.renew")

    async def start(self) -> None:
        """Register the pool, then renew from a background task until `stop`."""
        await self.register()
        self._loop.start()

    async def register(self) -> None:
        """Count the pool among the namespace's workers for a lease's length."""
        now = self.clock.now()
        try:
            await self.queue.register_worker(self.worker_id, self.slots, now=now,
                                             deadline=now + self.settings.lease_s)
        except (RedisError, OSError) as exc:  # only the count is late; the work goes on
            log.warning("worker %s: could not register: %r", self.worker_id, exc)

    async def stop(self) -> None:
        """End the renewals: at once if the loop sleeps, else after its call in progress
        (`PatientLoop`). The registration stays until `unregister` (the pool's last step)."""
        await self._loop.stop()

    async def unregister(self) -> None:
        """Leave the namespace's count of workers now (raises if Redis cannot be told)."""
        await self.queue.unregister_worker(self.worker_id, self.slots)

    async def _tick(self) -> None:
        await self.register()
        await self.renew()

    async def renew(self) -> None:
        """Extend every lease the pool holds by `lease_s` from now; report the lost ones."""
        leases = self._held()
        if not leases:
            return
        try:
            lost = await self.queue.renew(list(leases.items()),
                                          self.clock.now() + self.settings.lease_s)
        except Exception:
            log.exception("worker %s: lease renewal failed", self.worker_id)
            return
        for task_id in lost:
            self._lost(task_id, leases[task_id])
