"""The outbox on its own, driven by a stand-in pool: what it records, in which message the
"started" events leave, and what it returns to the pool."""

from __future__ import annotations

import asyncio

import orjson
from redis.asyncio import Redis

from chatroom_async import AITask, ProcessorSettings
from chatroom_async.clock import SystemClock
from chatroom_async.store.queue import Emit, Outcome, TaskQueue
from chatroom_async.worker.outbox import Outbox
from chatroom_async.worker.slots import Run, SlotLedger
from chatroom_async.worker.tally import HeldTally

SPEC = '{"user_id":1,"request_type":"chat_completion","request_data":{"message":"hi"},' \
       '"timeout":30.0,"created_at":0.0}'


class StandInPool:
    """Knows one run; drives the outbox as a pool does, never letting it claim."""

    def __init__(self, outbox: Outbox, run: Run) -> None:
        self.outbox, self.run = outbox, run
        self.settled: list[str] = []

    def places(self, outcomes: list[Outcome]) -> int:
        return 0

    async def flush(self) -> None:
        async for sent in self.outbox.drain(self.places):
            for outcome in sent.outcomes:
                if outcome.token == self.run.token and not self.run.settled:
                    self.run.settled = True
                    self.settled.append(outcome.task_id)
            sent.wake()
            assert sent.claimed is None, "the outbox claimed although the pool said 0 places"


def ended(task_id: str, token: str, event: str) -> Outcome:
    return Outcome(task_id, token, "completed",
                   {"status": "completed", "result": '{"response":"ok"}'}, event_json=event)


async def test_started_events_leave_ahead_of_the_outcomes_they_precede(
        queue: TaskQueue, redis: Redis) -> None:
    assert await queue.enqueue("a", SPEC, 2, 0, 1.0)
    [claimed] = (await queue.claim(now=0.0, lease_s=30, max_count=1, worker_id="w",
                                   extra_deliveries=1)).claimed
    task = AITask(task_id="a", user_id=1, request_type="chat_completion", request_data={})
    outbox = Outbox(queue=queue, slots=SlotLedger(1, 0), tally=HeldTally(1, enabled=False),
                    settings=ProcessorSettings(),
                    clock=SystemClock(), origin="o", worker_id="w")
    pool = StandInPool(outbox, Run(task, claimed.token))
    listener = redis.pubsub()
    await listener.subscribe(queue.keys.events)
    try:
        sent = outbox.announce(lambda: Emit("a", claimed.token, "event", 1, "",
                                            '{"type":"task_started","n":1}'))
        # Tasks start in the order given: both outcomes wait when the flush begins.
        recorded, stale, _ = await asyncio.gather(
            outbox.submit(ended("a", claimed.token, '{"type":"task_completed","n":2}')),
            outbox.submit(ended("a", "w:0", '{"type":"stale"}')),
            pool.flush())
        assert sent.done()
        assert recorded is True and stale is False
        assert pool.settled == ["a"]  # the stale delivery ends no run of this pool
        async with asyncio.timeout(5):
            while (message := await listener.get_message(ignore_subscribe_messages=True,
                                                         timeout=5)) is None:
                pass
        payload = orjson.loads(message["data"])
        assert [e["type"] for e in payload] == ["task_started", "task_completed"]
        stream = await redis.xrange(queue.keys.stream("a"))
        assert [(i, orjson.loads(f["e"])["n"]) for i, f in stream] == [("0-1", 1), ("0-2", 2)]
    finally:
        await listener.aclose()
