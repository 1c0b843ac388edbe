"""The fetcher of a worker pool, on its own, in virtual time: an idle one is woken by a
submit (not by its wait's end) and stops at once; a full one waits for a slot while the
outbox claims, then claims itself; tasks the claim script fails go to `dead`."""

from __future__ import annotations

import asyncio

from chatroom_async.clock import LoopClock
from chatroom_async.settings import ProcessorSettings
from chatroom_async.simulation.vtime import run_virtual
from chatroom_async.store.embedded import embedded_redis
from chatroom_async.store.keys import Keys
from chatroom_async.store.queue import ClaimResult, TaskQueue
from chatroom_async.task import AITask
from chatroom_async.worker.fetcher import Fetcher
from chatroom_async.worker.outbox import Outbox
from chatroom_async.worker.slots import Run, SlotLedger
from chatroom_async.worker.tally import HeldTally

T0 = 1_767_225_600.0
SPEC = ('{"user_id": 1, "request_type": "chat_completion", "request_data": {}, '
        '"timeout": 30.0, "created_at": 0.0}')
SETTINGS = ProcessorSettings(max_idle_wait_s=60.0)


class StandInPool:
    """What a pool does with a claim: each task takes a slot and is noted."""

    def __init__(self, concurrency: int) -> None:
        self.slots = SlotLedger(concurrency, 0)
        self.runs: list[Run] = []
        self.taken_at: list[float] = []
        self.dead: list[str] = []
        self.took = asyncio.Event()

    def take(self, result: ClaimResult, now: float) -> None:
        for c in result.claimed:
            task = AITask(task_id=c.task_id, user_id=1, request_type="chat_completion",
                          request_data={})
            self.slots.occupy()
            self.runs.append(Run(task, c.token))
            self.taken_at.append(now)
        if result.claimed:
            self.took.set()

    async def announce_dead(self, task_id: str) -> None:
        self.dead.append(task_id)

    def end(self, run: Run) -> None:
        self.slots.release(run)
        self.slots.settle(run)

    @property
    def ids(self) -> list[str]:
        return [run.task.task_id for run in self.runs]


def fetcher_for(queue: TaskQueue, pool: StandInPool, clock: LoopClock) -> Fetcher:
    tally = HeldTally(pool.slots.concurrency, enabled=False)
    outbox = Outbox(queue=queue, slots=pool.slots, tally=tally, settings=SETTINGS, clock=clock,
                    origin="o", worker_id="w1")
    return Fetcher(queue=queue, slots=pool.slots, tally=tally, outbox=outbox, settings=SETTINGS,
                   clock=clock, worker_id="w1", take=pool.take, dead=pool.announce_dead)


def test_an_idle_fetcher_is_woken_by_a_submit_and_stops_at_once() -> None:
    async def main() -> tuple[list[str], float, float]:
        clock = LoopClock(T0)
        redis = embedded_redis()
        queue = TaskQueue(redis, Keys("fetch"))
        pool = StandInPool(2)
        fetcher = fetcher_for(queue, pool, clock)
        fetcher.start()
        await clock.sleep(5.0)  # its first claim found nothing: it waits, up to 60 s
        assert await queue.enqueue("a", SPEC, 2, 3, 1.0)
        await pool.took.wait()
        woken = clock.now() - T0
        await clock.sleep(1.0)  # one slot still free: it waits again, up to 60 s
        await fetcher.stop()  # which ends that wait
        stopped = clock.now() - T0
        await redis.aclose()
        return pool.ids, woken, stopped

    ids, woken, stopped = run_virtual(main)
    assert ids == ["a"]
    assert woken < 6.0  # at the submit, 5 s in, not when the 60 s wait ran out
    assert stopped - woken < 2.0


def test_a_full_fetcher_waits_for_a_slot_then_claims() -> None:
    async def main() -> tuple[list[str], bool, int, list[str]]:
        clock = LoopClock(T0)
        redis = embedded_redis()
        queue = TaskQueue(redis, Keys("fetch"))
        for task_id in ("a", "b"):
            assert await queue.enqueue(task_id, SPEC, 2, 3, 1.0)
        pool = StandInPool(1)
        fetcher = fetcher_for(queue, pool, clock)
        fetcher.start()
        await pool.took.wait()
        pool.took.clear()
        await clock.sleep(10.0)  # its one slot is busy: no claim, however long
        while_full = (list(pool.ids), fetcher.full, await redis.zcard(queue.keys.ready))
        pool.end(pool.runs[0])
        await pool.took.wait()
        await fetcher.stop()
        await redis.aclose()
        return (*while_full, pool.ids)

    ids_full, full, ready, ids_after = run_virtual(main)
    assert (ids_full, full, ready) == (["a"], True, 1)  # the outbox may claim for it now
    assert ids_after == ["a", "b"]  # claimed once the slot freed


def test_a_task_the_claim_script_fails_goes_to_dead() -> None:
    async def main() -> tuple[list[str], list[str]]:
        clock = LoopClock(T0)
        redis = embedded_redis()
        queue = TaskQueue(redis, Keys("fetch"))
        # A record without its spec cannot run: the claim script fails it.
        await redis.hset(queue.keys.task("bad"), mapping={"priority": "2", "status": "pending"})
        await redis.zadd(queue.keys.ready, {"bad": 0.5})
        assert await queue.enqueue("good", SPEC, 2, 3, 1.0)
        pool = StandInPool(2)
        fetcher = fetcher_for(queue, pool, clock)
        fetcher.start()
        await pool.took.wait()
        await fetcher.stop()
        await redis.aclose()
        return pool.ids, pool.dead

    ids, dead = run_virtual(main)
    assert (ids, dead) == (["good"], ["bad"])
