"""The event bus's side of other processes' events: when a process listens to them, what
it builds and delivers, and what it skips because nobody in this process would receive it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from chatroom_async import AITask, AsyncAIProcessor, ProcessorError, TaskStatus
from chatroom_async.events import EventBus, envelope, message_json
from chatroom_async.store.keys import Keys
from chatroom_async.store.queue import TaskQueue
from tests.conftest import Gate, MakeProcessor

KEYS = Keys("events-test")


def task(task_id: str, status: TaskStatus) -> AITask:
    return AITask(task_id=task_id, user_id=7, request_type="chat_completion",
                  request_data={"message": "hi"}, status=status)


def message(*events: tuple[str, AITask], origin: str = "elsewhere") -> str:
    return message_json([envelope(name, t, origin=origin, ts=0.0) for name, t in events])


@pytest.fixture
def bus() -> EventBus:
    bus = EventBus("here")
    bus._channels = KEYS  # what connect() sets; the tests feed messages without a server
    return bus


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the tasks the bus rebuilt from messages."""
    ids: list[str] = []
    from_dict = AITask.from_dict

    def counting(data: dict[str, object]) -> AITask:
        ids.append(str(data["task_id"]))
        return from_dict(data)

    monkeypatch.setattr(AITask, "from_dict", staticmethod(counting))
    return ids


async def test_with_nobody_listening_nothing_is_parsed(bus: EventBus, built: list[str]) -> None:
    bus._on_message(KEYS.events, message(("task_started", task("a", TaskStatus.PROCESSING))))
    bus._on_message(KEYS.events, "not json at all")  # never even parsed
    assert built == []


async def test_only_events_someone_receives_are_built(bus: EventBus, built: list[str]) -> None:
    started: list[AITask] = []
    bus.add_callback("task_started", started.append)
    waiter = bus.waiter("b")
    bus._on_message(KEYS.events, message(
        ("task_completed", task("a", TaskStatus.COMPLETED)),  # no callback, no waiter
        ("task_started", task("b", TaskStatus.PROCESSING)),  # a callback
        ("task_completed", task("b", TaskStatus.COMPLETED)),  # a waiter
    ))
    assert built == ["b", "b"]
    assert [t.task_id for t in started] == ["b"]
    finished = await asyncio.wait_for(waiter, 1)
    assert finished.task_id == "b" and finished.status is TaskStatus.COMPLETED


async def test_own_events_are_skipped(bus: EventBus, built: list[str]) -> None:
    got: list[AITask] = []
    bus.add_callback("task_completed", got.append)
    bus._on_message(KEYS.events, message(("task_completed", task("a", TaskStatus.COMPLETED)),
                                         origin="here"))
    assert built == [] and got == []
    bus._on_message(KEYS.events, message(("task_completed", task("a", TaskStatus.COMPLETED))))
    assert built == ["a"] and [t.task_id for t in got] == ["a"]


async def subscribers(proc: AsyncAIProcessor) -> int:
    """How many connections listen on the processor's event channel."""
    assert proc.redis is not None
    [(_, count)] = await proc.redis.pubsub_numsub(proc.keys.events)
    return int(count)

def note_reads(proc: AsyncAIProcessor, before: Callable[[], Awaitable[None]] | None = None
               ) -> asyncio.Event:
    """Set the returned event after each `get_task_status` of `proc` (a waiting
    `wait_for_task` has then read the record); `before` runs ahead of each read."""
    read = asyncio.Event()
    get_task_status = proc.get_task_status

    async def noted_read(task_id: str) -> Any:
        if before is not None:
            await before()
        status = await get_task_status(task_id)
        read.set()
        return status

    proc.get_task_status = noted_read  # type: ignore[method-assign]
    return read



async def test_a_client_that_only_submits_does_not_listen(
        make_processor: MakeProcessor) -> None:
    client = await make_processor(max_workers=0)
    await make_processor(max_workers=1)
    task_id = await client.submit_task(1, "chat_completion", {"message": "hi"})
    assert await subscribers(client) == 0  # the worker's events for it go nowhere here
    final = await client.wait_for_task(task_id, timeout=10)  # this one listens first
    assert final["status"] == "completed" and await subscribers(client) == 1


async def test_a_worker_process_listens_only_once_someone_would_hear(
        make_processor: MakeProcessor) -> None:
    worker = await make_processor(max_workers=2)  # no callbacks, no waiters
    assert await subscribers(worker) == 0  # it does not receive the others' events
    worker.add_callback("task_completed", lambda task: None)
    await worker.hear_others()
    assert await subscribers(worker) == 1


async def test_waiting_for_a_task_listens_before_it_reads(make_processor: MakeProcessor) -> None:
    gate = Gate()
    waiter = await make_processor(max_workers=1, backend=gate)
    await waiter.submit_task(1, "chat_completion", {"message": "keeps it busy"})
    async with asyncio.timeout(10):
        await gate.entered.wait()
    task_id = await waiter.submit_task(1, "chat_completion", {"message": "runs elsewhere"})
    assert await subscribers(waiter) == 0
    listening_at_read: list[bool] = []

    async def note_listening() -> None:
        listening_at_read.append(await subscribers(waiter) == 1)

    note_reads(waiter, before=note_listening)
    waiting = asyncio.create_task(waiter.wait_for_task(task_id, timeout=10))
    await make_processor(max_workers=1)  # another worker process runs it
    final = await waiting
    gate.release.set()
    assert final["status"] == "completed"
    assert listening_at_read and all(listening_at_read)


async def test_callbacks_added_before_start_listen_from_the_start(
        redis: Redis, namespace: str) -> None:
    proc = AsyncAIProcessor(max_workers=1, redis=redis, namespace=namespace)
    proc.add_callback("task_failed", lambda task: None)
    await proc.start()
    try:
        subscribing = proc.bus._subscribing
        assert subscribing is not None and subscribing.done()  # by start(), not a wait
        await proc.hear_others()
        assert await subscribers(proc) == 1
    finally:
        await proc.stop()


async def test_a_task_that_ends_while_the_connection_is_down_is_still_seen(
        real_redis: Redis, namespace: str) -> None:
    """On the real server only: fakeredis's connections do not fail a pending read when
    they are closed."""
    client = AsyncAIProcessor(max_workers=0, redis=real_redis, namespace=namespace)
    gate = Gate()
    worker = AsyncAIProcessor(max_workers=1, redis=real_redis, namespace=namespace,
                              backend=gate)
    await client.start()
    await worker.start()
    try:
        await _missed_while_down(client, worker, gate)
    finally:
        await worker.stop(drain_timeout_s=1.0)
        await client.stop()
        await TaskQueue(real_redis, Keys(namespace)).purge()


async def _missed_while_down(client: AsyncAIProcessor, worker: AsyncAIProcessor,
                             gate: Gate) -> None:
    task_id = await client.submit_task(1, "chat_completion", {"message": "hi"})
    async with asyncio.timeout(10):
        await gate.entered.wait()
    read = note_reads(client)
    # The listener's connection goes down and stays down until `back` is set: redis-py
    # reconnects (and subscribes again) inside the read that failed.
    assert client.bus._pubsub is not None and client.bus._pubsub.connection is not None
    connection = client.bus._pubsub.connection
    reconnecting, back = asyncio.Event(), asyncio.Event()
    connect = connection.connect

    async def held_connect() -> None:
        reconnecting.set()
        await back.wait()
        await connect()

    # Its own deadline is far: only the wake-up after the reconnect can end it in time.
    waiting = asyncio.create_task(client.wait_for_task(task_id, timeout=60))
    async with asyncio.timeout(10):
        await read.wait()  # the waiter is registered and the task was still running
        connection.connect = held_connect  # type: ignore[method-assign]
        await connection.disconnect()
        await reconnecting.wait()  # the client hears nothing now
        assert await subscribers(client) == 0
        gate.release.set()
        await worker.wait_for_task(task_id)  # recorded and published: the client missed it
        assert not waiting.done()
        back.set()
    async with asyncio.timeout(5):
        final = await waiting
    assert final["status"] == "completed" and client.bus.lost_connections == 1


async def test_a_failed_subscription_is_sent_again(make_processor: MakeProcessor) -> None:
    worker = await make_processor(max_workers=1)
    bus = worker.bus
    assert bus._pubsub is not None
    subscribe = bus._pubsub.subscribe
    failures: list[str] = []

    async def refused_once(*channels: str) -> None:
        if not failures:
            failures.append(channels[0])
            raise RedisConnectionError("refused")
        await subscribe(*channels)

    pauses: list[float] = []

    async def no_pause(seconds: float) -> None:
        pauses.append(seconds)

    bus._pubsub.subscribe = refused_once  # type: ignore[method-assign]
    bus._pause = no_pause  # type: ignore[method-assign]
    async with asyncio.timeout(5):
        await worker.hear_others()
    assert failures == [worker.keys.events] and pauses == [0.05]
    assert await subscribers(worker) == 1


async def test_stopping_during_a_wait_says_so(make_processor: MakeProcessor) -> None:
    client = await make_processor(max_workers=0)
    task_id = await client.submit_task(1, "chat_completion", {"message": "nobody runs it"})
    read = note_reads(client)
    waiting = asyncio.create_task(client.wait_for_task(task_id))
    async with asyncio.timeout(5):
        await read.wait()  # the wait has read the record and waits for the event
        await client.stop()
        with pytest.raises(ProcessorError, match="stopped"):
            await waiting


def test_event_types_are_one_enum_and_the_tuple_of_its_values() -> None:
    from chatroom_async import EVENT_TYPES, EventType

    assert EVENT_TYPES == tuple(e.value for e in EventType)
    assert {"task_started", "task_completed", "task_failed", "task_progress"} <= set(EVENT_TYPES)
    assert EventType("task_handed_back") is EventType.TASK_HANDED_BACK
    assert [e for e in EventType if e.terminal] == [EventType.TASK_COMPLETED,
                                                    EventType.TASK_FAILED,
                                                    EventType.TASK_CANCELLED]


def test_the_envelope_is_json_whatever_the_values() -> None:
    import orjson

    from chatroom_async import TaskEvent

    odd = 'host"},{"x":1}\n\\'
    t = task('a"b', TaskStatus.COMPLETED)
    t.user_id = 'user "quoted"'
    raw = envelope("task_completed", t, origin=odd, ts=1.5)
    data = orjson.loads(raw)
    assert data["origin"] == odd and data["task"]["user_id"] == 'user "quoted"'
    assert list(data) == ["origin", "type", "task_id", "attempt", "ts", "task"]
    event = TaskEvent.from_json(7, raw)
    assert event.cursor == 7 and event.terminal and event.task_id == 'a"b'
    assert orjson.loads(message_json([raw, raw])) == [data, data]
