"""The outbox on its own, with a stand-in pool: what it records, in which message the
"started" events leave, and what it tells the pool."""

from __future__ import annotations

import asyncio

import orjson
from redis.asyncio import Redis

from chatroom_async import AITask, ProcessorSettings
from chatroom_async.clock import SystemClock
from chatroom_async.store.queue import ClaimResult, Outcome, TaskQueue
from chatroom_async.worker.outbox import Outbox
from chatroom_async.worker.slots import Run, SlotLedger

SPEC = '{"user_id":1,"request_type":"chat_completion","request_data":{"message":"hi"},' \
       '"timeout":30.0,"created_at":0.0}'


class StandInPool:
    """Knows one run; never asks the outbox to claim."""

    def __init__(self, run: Run) -> None:
        self.slots = SlotLedger(1, 0)
        self.run = run
        self.settled: list[str] = []

    def run_of(self, outcome: Outcome) -> Run | None:
        return self.run if outcome.token == self.run.token and not self.run.settled else None

    def settle(self, run: Run) -> None:
        run.settled = True
        self.settled.append(run.task.task_id)

    def claims_with_outcomes(self) -> bool:
        return False

    async def adopt(self, result: ClaimResult, now: float) -> None:
        raise AssertionError("the outbox claimed although the pool did not ask it to")


def ended(task_id: str, token: str, event: str) -> Outcome:
    return Outcome(task_id, token, "completed",
                   {"status": "completed", "result": '{"response":"ok"}'}, event_json=event)


async def test_started_events_leave_ahead_of_the_outcomes_they_precede(
        queue: TaskQueue, redis: Redis) -> None:
    assert await queue.enqueue("a", SPEC, 2, 0, 1.0)
    [claimed] = (await queue.claim(now=0.0, lease_s=30, max_count=1, worker_id="w",
                                   extra_deliveries=1)).claimed
    task = AITask(task_id="a", user_id=1, request_type="chat_completion", request_data={})
    pool = StandInPool(Run(task, claimed.token))
    outbox = Outbox(pool, queue=queue, settings=ProcessorSettings(), clock=SystemClock(),
                    origin="o", worker_id="w")
    listener = redis.pubsub()
    await listener.subscribe(queue.keys.events)
    try:
        outbox.announce('{"event":"task_started","n":1}')
        # Tasks start in the order given: both outcomes wait when the flush begins.
        recorded, stale, _ = await asyncio.gather(
            outbox.submit(ended("a", claimed.token, '{"event":"task_completed","n":2}')),
            outbox.submit(ended("a", "w:0", '{"event":"stale"}')),
            outbox.flush())
        assert recorded is True and stale is False
        assert pool.settled == ["a"]  # the stale delivery ends no run of this pool
        async with asyncio.timeout(5):
            while (message := await listener.get_message(ignore_subscribe_messages=True,
                                                         timeout=5)) is None:
                pass
        payload = orjson.loads(message["data"])
        assert payload["origin"] == "o"
        assert [e["event"] for e in payload["events"]] == ["task_started", "task_completed"]
    finally:
        await listener.aclose()
