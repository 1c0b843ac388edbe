"""`follow`: one task's events from any process, replayed from a cursor and then live,
without loss across a reconnect; attempts made explicit; partial text kept; ownership."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from contextlib import aclosing
from typing import Any

import pytest
from redis.asyncio import Redis

from chatroom_async import (
    AsyncAIProcessor,
    EventType,
    ProcessorError,
    ProcessorSettings,
    RetryPolicy,
    TaskAccessError,
    TaskEvent,
    TaskNotFoundError,
)
from chatroom_async.store.follow import FollowReader
from chatroom_async.store.keys import Keys
from tests.conftest import REAL_URL, Gate, MakeProcessor, _real_client
from tests.streaming import Talker

CHAT = {"user_id": 1, "request_type": "chat_completion", "request_data": {"message": "hi"}}
WORDS = list("异步处理让聊天室保持流畅")
FAST_RETRY = RetryPolicy(base_s=0.01, cap_s=0.01, jitter="none")


async def collect(proc: AsyncAIProcessor, task_id: str, after: int = 0, *,
                  until: int | None = None, text: str | None = None,
                  **kw: Any) -> list[TaskEvent]:
    """The task's events from `after` to its end (or the first `until` of them, or up to
    the one that completes `text`)."""
    got: list[TaskEvent] = []
    async with asyncio.timeout(20), aclosing(proc.follow(task_id, after=after, **kw)) as events:
        async for event in events:
            got.append(event)
            if until is not None and len(got) == until or text_of(got) == text:
                break
    return got


def text_of(events: list[TaskEvent], attempt: int | None = None) -> str:
    return "".join(e.text for e in events if attempt is None or e.attempt == attempt)


def check_cursors(events: list[TaskEvent], first: int = 1) -> None:
    assert [e.cursor for e in events] == list(range(first, first + len(events)))


async def test_live_then_replay_from_any_cursor(make_processor: MakeProcessor) -> None:
    worker = await make_processor(max_workers=1, backend=Talker(WORDS, steps=True))
    client = await make_processor(max_workers=0)
    task_id = await client.submit_task(**CHAT)
    backend = worker.backend
    assert isinstance(backend, Talker)
    following = asyncio.create_task(collect(client, task_id))
    backend.release(len(WORDS))
    live = await following
    assert [e.type for e in live][0] is EventType.TASK_STARTED
    assert live[-1].type is EventType.TASK_COMPLETED and live[-1].terminal
    assert {e.type for e in live[1:-1]} == {EventType.TASK_PROGRESS}
    assert text_of(live) == "".join(WORDS) == live[-1].task["result"]["response"]
    assert all(e.attempt == 1 and e.task_id == task_id for e in live)
    check_cursors(live)
    # After the end: the whole story again, or the rest of it from any cursor.
    assert [e.to_dict() for e in await collect(client, task_id)] == [e.to_dict() for e in live]
    tail = await collect(client, task_id, after=2)
    assert [e.cursor for e in tail] == [e.cursor for e in live[2:]]


async def test_a_follow_that_joins_mid_stream_replays_then_goes_on(
        make_processor: MakeProcessor) -> None:
    backend = Talker(WORDS, steps=True)
    worker = await make_processor(max_workers=1, backend=backend, stream_coalesce_s=0.0)
    task_id = await worker.submit_task(**CHAT)
    backend.release(4)
    first = await collect(worker, task_id, text="".join(WORDS[:4]))
    later = asyncio.create_task(collect(worker, task_id, after=first[-1].cursor))
    backend.release(len(WORDS) - 4)
    rest = await later
    check_cursors(first + rest)
    assert text_of(first + rest) == "".join(WORDS)


async def test_coalescing_cuts_the_writes_and_keeps_the_text(
        make_processor: MakeProcessor) -> None:
    words = [f"w{i} " for i in range(200)]
    proc = await make_processor(max_workers=1, backend=Talker(words), stream_coalesce_s=0.05)
    task_id = await proc.submit_task(**CHAT)
    events = await collect(proc, task_id)
    progress = [e for e in events if e.type is EventType.TASK_PROGRESS]
    assert text_of(events) == "".join(words)
    # 200 chunks that arrive at once: the first goes alone, the rest wait behind it.
    assert 1 <= len(progress) <= 5
    assert sum(e.task["progress"]["count"] for e in progress) == 200


async def test_a_retry_is_a_new_attempt_and_its_text_starts_again(
        make_processor: MakeProcessor) -> None:
    backend = Talker(WORDS, fail={1: 5})  # the first attempt breaks after five chunks
    proc = await make_processor(max_workers=1, backend=backend, retry=FAST_RETRY,
                                stream_coalesce_s=0.0)
    task_id = await proc.submit_task(**CHAT)
    events = await collect(proc, task_id)
    check_cursors(events)
    kinds = [e.type for e in events]
    assert kinds.count(EventType.TASK_STARTED) == 2
    retrying = kinds.index(EventType.TASK_RETRYING)
    assert kinds[retrying + 1] is EventType.TASK_STARTED and events[retrying + 1].attempt == 2
    assert events[retrying].task["error_type"] == "ServerError"
    assert text_of(events, attempt=1) == "".join(WORDS[:5])
    assert text_of(events, attempt=2) == "".join(WORDS)
    final = await proc.get_task_status(task_id)
    assert final is not None and final["status"] == "completed"
    # The record tells the current state: the first attempt's error is gone.
    assert final["error_type"] is None and final["error_message"] is None
    assert final["partial_text"] is None


async def test_a_students_handler_in_the_path_starts_a_retried_answer_again(
        make_processor: MakeProcessor) -> None:
    # `serve --handler`: the handler keeps each task's frames to replay to a client that
    # attaches late, and the retry of a broken stream runs in the same process. The second
    # attempt's text is that attempt's alone, not the first one's replayed ahead of it.
    from chatroom_async.grading import HandlerStreamBackend
    from solutions.streaming import StreamingResponseHandler

    handler = StreamingResponseHandler(min_interval_s=0.0)
    backend = HandlerStreamBackend(Talker(WORDS, fail={1: 5}), handler)
    proc = await make_processor(max_workers=1, backend=backend, retry=FAST_RETRY,
                                stream_coalesce_s=0.0)
    try:
        task_id = await proc.submit_task(**CHAT)
        events = await collect(proc, task_id)
    finally:
        await handler.aclose()
    assert [e.attempt for e in events if e.type is EventType.TASK_STARTED] == [1, 2]
    assert text_of(events, attempt=1) == "".join(WORDS[:5])
    assert text_of(events, attempt=2) == "".join(WORDS)


class NoRetryFrames:
    """A handler that pushes each chunk as a delta and keeps no history: no "retry" frame."""

    def __init__(self) -> None:
        self.clients: dict[str, Any] = {}
        self.seq = 0

    async def attach(self, task_id: str, client: Any, last_seq: int = 0) -> None:
        self.clients[task_id] = client

    def detach(self, task_id: str, client: Any) -> None:
        self.clients.pop(task_id, None)

    async def handle_streaming_response(self, task_id: str, chunks: Any) -> dict[str, Any]:
        from chatroom_async.grading import Frame

        async for chunk in chunks:
            self.seq += 1
            await self.clients[task_id].send(Frame(task_id, self.seq, "delta", chunk.text))
            if chunk.result is not None:
                return dict(chunk.result)
        raise AssertionError("the stream ended without a result")


async def test_a_handler_without_retry_frames_gives_a_retried_answer_whole(
        make_processor: MakeProcessor) -> None:
    from chatroom_async.grading import HandlerStreamBackend

    backend = HandlerStreamBackend(Talker(WORDS, fail={1: 5}), NoRetryFrames())
    proc = await make_processor(max_workers=1, backend=backend, retry=FAST_RETRY,
                                stream_coalesce_s=0.0)
    events = await collect(proc, await proc.submit_task(**CHAT))
    assert text_of(events, attempt=1) == "".join(WORDS[:5])  # as the chunks came
    second = [e for e in events if e.type is EventType.TASK_PROGRESS and e.attempt == 2]
    assert [e.text for e in second] == ["".join(WORDS)]  # at its end, in one piece


async def test_a_failed_attempt_keeps_its_partial_text_and_reason(
        make_processor: MakeProcessor) -> None:
    proc = await make_processor(max_workers=1, backend=Talker(WORDS, fail={1: 3}))
    task_id = await proc.submit_task(**CHAT, max_retries=0)
    events = await collect(proc, task_id)
    assert events[-1].type is EventType.TASK_FAILED
    status = await proc.get_task_status(task_id)
    assert status is not None and status["status"] == "failed"
    assert status["partial_text"] == "".join(WORDS[:3]) and status["partial_attempt"] == 1
    assert status["error_type"] == "ServerError"


async def test_a_cancelled_task_keeps_its_partial_text(make_processor: MakeProcessor) -> None:
    proc = await make_processor(max_workers=1, backend=Talker(WORDS, hang_after=4))
    task_id = await proc.submit_task(**CHAT)
    got: list[TaskEvent] = []
    async with aclosing(proc.follow(task_id)) as events:
        async for event in events:
            got.append(event)
            running = await proc.get_task_status(task_id)
            assert running is not None
            if event.type is EventType.TASK_PROGRESS and text_of(got) == "".join(WORDS[:4]):
                assert running["partial_text"] == "".join(WORDS[:4])  # while it runs
                assert await proc.cancel_task(task_id) is True
    assert got[-1].type is EventType.TASK_CANCELLED
    status = await proc.get_task_status(task_id)
    assert status is not None and status["status"] == "cancelled"
    assert status["partial_text"] == "".join(WORDS[:4]) and status["error_type"] is None


async def test_a_hand_back_is_announced_and_counted(make_processor: MakeProcessor) -> None:
    first = await make_processor(max_workers=1, backend=Talker(WORDS, hang_after=2),
                                 stream_coalesce_s=0.0)
    task_id = await first.submit_task(**CHAT)
    head = await collect(first, task_id, text="".join(WORDS[:2]))
    await first.stop(drain_timeout_s=0)
    await make_processor(max_workers=1, backend=Talker(WORDS))
    client = await make_processor(max_workers=0)
    rest = await collect(client, task_id, after=head[-1].cursor)
    events = head + rest
    check_cursors(events)
    kinds = [e.type for e in events]
    back = kinds.index(EventType.TASK_HANDED_BACK)
    assert events[back].attempt == 1 and events[back + 1].type is EventType.TASK_STARTED
    assert events[back + 1].attempt == 2 and text_of(events, attempt=2) == "".join(WORDS)
    final = await client.wait_for_task(task_id, timeout=10)
    assert final["deliveries"] == 2 and final["handed_back"] == 1
    assert (await client.get_stats())["handed_back"] == 1


async def test_users_own_their_tasks(make_processor: MakeProcessor) -> None:
    gate = Gate()
    proc = await make_processor(max_workers=1, backend=gate)
    task_id = await proc.submit_task(**CHAT)
    assert (await proc.get_task_status(task_id, user_id=1)) is not None
    with pytest.raises(TaskAccessError):
        await proc.get_task_status(task_id, user_id=2)
    with pytest.raises(TaskAccessError):
        await collect(proc, task_id, user_id=2)
    with pytest.raises(TaskAccessError):
        await proc.cancel_task(task_id, user_id=2)
    with pytest.raises(TaskNotFoundError):
        await collect(proc, "no-such-task")
    with pytest.raises(ValueError):
        await collect(proc, task_id, after=-1)
    with pytest.raises(ValueError):  # past its last event: it would wait for ever
        await collect(proc, task_id, after=99)
    status = await proc.get_task_status(task_id)
    assert status is not None and status["status"] in ("pending", "processing")  # untouched
    assert await proc.cancel_task(task_id, user_id=1) is True


async def test_only_followers_read_a_tasks_chunks(make_processor: MakeProcessor) -> None:
    worker = await make_processor(max_workers=2, backend=Talker(WORDS))
    watcher, bystander = await make_processor(max_workers=0), await make_processor(max_workers=0)
    mine, other = await watcher.submit_task(**CHAT), await watcher.submit_task(**CHAT)
    events = await collect(watcher, mine)
    await bystander.wait_for_task(other, timeout=10)  # listens to lifecycle events only
    assert {e.task_id for e in events} == {mine}
    assert worker.redis is not None
    [(_, listeners)] = await worker.redis.pubsub_numsub(worker.keys.progress)
    assert listeners == 0  # nobody asked for every task's chunks


async def test_a_stale_event_does_not_end_a_wait(make_processor: MakeProcessor) -> None:
    gate = Gate()
    proc = await make_processor(max_workers=1, backend=gate)
    task_id = await proc.submit_task(**CHAT)
    await gate.entered.wait()
    waiting = asyncio.create_task(proc.wait_for_task(task_id, timeout=10))
    await proc.hear_others()
    running = await proc.get_task_status(task_id)
    assert running is not None
    forged = AITaskLike(running, "completed")
    assert proc.redis is not None
    for _ in range(3):  # a forged "completed" from another origin wakes the wait...
        await proc.redis.publish(proc.keys.events, forged)
        await asyncio.sleep(0)
    assert not waiting.done()
    gate.release.set()  # ...which returns only once the record says the task finished
    final = await waiting
    assert final["status"] == "completed" and final["result"] is not None


def AITaskLike(status: dict[str, Any], claimed: str) -> str:  # noqa: N802
    body = {**status, "status": claimed}
    body.pop("partial_text", None)
    body.pop("partial_attempt", None)
    return json.dumps([{"origin": "forger", "type": "task_completed",
                        "task_id": status["task_id"], "attempt": 1, "ts": 0.0, "task": body}])



async def test_a_wake_sent_before_the_first_read_reaches_the_server_is_not_lost(
        redis: Redis, namespace: str) -> None:
    # The reader's first blocking read is held back (as a connection still being set up
    # holds it) while a second task is followed and its wake lands first: the read must
    # still see that wake and include the second task, not block for its heartbeat.
    keys = Keys(namespace)
    reader = FollowReader(redis, keys, "origin-1")
    entered, hold = asyncio.Event(), asyncio.Event()
    blocking = reader._lane.blocking

    async def held(*args: Any, block_s: float) -> Any:
        entered.set()
        await hold.wait()
        return await blocking(*args, block_s=block_s)

    reader._lane.blocking = held  # type: ignore[method-assign]
    try:
        reader.add("a", 0)
        async with asyncio.timeout(5):
            await entered.wait()  # the first read is built, with task "a" only
        second = reader.add("b", 0)
        await reader.wake()
        hold.set()
        await redis.xadd(keys.stream("b"), {"e": "first chunk"}, id="0-1")
        async with asyncio.timeout(5):  # far under the read's 30 s heartbeat
            assert await second.queue.get() == (1, "first chunk")
    finally:
        await reader.close()
        await redis.delete(keys.stream("b"))

# -- on the real server: other OS processes, a killed connection -----------------------------

@pytest.fixture
async def real_ns(namespace: str) -> Any:
    client = await _real_client()
    yield namespace
    async for key in client.scan_iter(match=f"{namespace}:*"):
        await client.delete(key)
    await client.aclose()


@pytest.mark.real_redis
async def test_a_follower_in_another_os_process(real_ns: str) -> None:
    backend = Talker(WORDS, steps=True)
    async with AsyncAIProcessor(REAL_URL, max_workers=1, backend=backend,
                                namespace=real_ns) as worker:
        task_id = await worker.submit_task(**CHAT)
        follower = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.streaming", "follow", REAL_URL, real_ns, task_id, "0",
            "1", stdout=asyncio.subprocess.PIPE)
        assert follower.stdout is not None
        async with asyncio.timeout(30):
            first = json.loads(await follower.stdout.readline())
            assert first["type"] == "task_started" and first["cursor"] == 1
            backend.release(len(WORDS))
            rest = [json.loads(line) for line in (await follower.stdout.read()).splitlines()]
            await follower.wait()
    assert follower.returncode == 0
    events = [first, *rest]
    assert [e["cursor"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "task_completed"
    assert "".join(e["task"]["progress"]["text"] for e in events
                   if e["type"] == "task_progress") == "".join(WORDS)


@pytest.mark.real_redis
async def test_one_process_follows_more_answers_than_its_pool_has_connections(
        real_ns: str) -> None:
    """A web process following hundreds of answers at once: past the client's connections
    (MAX_CONNECTIONS) a follow waits for one instead of failing with MaxConnectionsError."""
    from chatroom_async.processor import MAX_CONNECTIONS

    answers = MAX_CONNECTIONS * 5 // 2
    async with AsyncAIProcessor(REAL_URL, max_workers=answers // 2, backend=Talker(WORDS[:3]),
                                namespace=real_ns) as worker, \
            AsyncAIProcessor(REAL_URL, max_workers=0, namespace=real_ns) as web:
        ids = await worker.submit_many([CHAT] * answers)
        texts = await asyncio.wait_for(
            asyncio.gather(*(collect(web, task_id) for task_id in ids)), 60)
    assert [text_of(events) for events in texts] == ["".join(WORDS[:3])] * answers
    assert all(events[-1].type is EventType.TASK_COMPLETED for events in texts)


@pytest.mark.real_redis
async def test_a_killed_connection_loses_and_repeats_nothing(real_ns: str) -> None:
    backend = Talker(WORDS, steps=True)
    settings = ProcessorSettings(stream_coalesce_s=0.0)
    async with AsyncAIProcessor(REAL_URL, max_workers=1, backend=backend, namespace=real_ns,
                                settings=settings) as proc:
        task_id = await proc.submit_task(**CHAT)
        got: list[TaskEvent] = []
        admin = Redis.from_url(REAL_URL)
        try:
            async with asyncio.timeout(30), aclosing(proc.follow(task_id)) as events:
                backend.release(3)
                async for event in events:
                    got.append(event)
                    if text_of(got) == "".join(WORDS[:3]):  # mid-stream: kill the reader's
                        # connection (after this, the rest is sent while it reconnects)
                        reader = proc._reader
                        assert reader is not None and reader._lane._conn is not None
                        writer = reader._lane._conn._writer  # type: ignore[attr-defined]
                        host, port = writer.get_extra_info("sockname")[:2]
                        assert await admin.client_kill_filter(_type=None,
                                                              addr=f"{host}:{port}") == 1
                        backend.release(len(WORDS) - 3)
        finally:
            await admin.aclose()
        assert reader.lost_connections >= 1
    check_cursors(got)
    assert text_of(got) == "".join(WORDS) and got[-1].type is EventType.TASK_COMPLETED


@pytest.mark.real_redis
async def test_a_worker_killed_mid_stream_shows_as_a_new_attempt(real_ns: str) -> None:
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.streaming", "worker", REAL_URL, real_ns,
        "".join(WORDS), "4", stdout=asyncio.subprocess.PIPE)
    assert worker.stdout is not None
    settings = ProcessorSettings(lease_s=1.0, stream_coalesce_s=0.0)
    try:
        async with asyncio.timeout(30):
            assert (await worker.stdout.readline()).strip() == b"ready"
        async with AsyncAIProcessor(REAL_URL, max_workers=0, namespace=real_ns) as client:
            task_id = await client.submit_task(**CHAT)
            head = await collect(client, task_id, text="".join(WORDS[:4]))
            assert text_of(head) == "".join(WORDS[:4])
            worker.send_signal(signal.SIGKILL)
            await worker.wait()
            async with AsyncAIProcessor(REAL_URL, max_workers=1, backend=Talker(WORDS),
                                        namespace=real_ns, settings=settings):
                rest = await collect(client, task_id, after=head[-1].cursor)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    events = head + rest
    check_cursors(events)
    restart = next(e for e in rest if e.type is EventType.TASK_STARTED)
    assert restart.attempt == 2 and text_of(events, attempt=2) == "".join(WORDS)
    assert events[-1].type is EventType.TASK_COMPLETED


async def test_a_finished_stream_expires_first_and_follow_still_ends(
        make_processor: MakeProcessor) -> None:
    proc = await make_processor(max_workers=1, backend=Talker(WORDS), stream_ttl_s=60.0)
    task_id = await proc.submit_task(**CHAT)
    events = await collect(proc, task_id)
    assert proc.redis is not None
    stream, record = proc.keys.stream(task_id), proc.keys.task(task_id)
    assert 0 < await proc.redis.ttl(stream) <= 60 < await proc.redis.ttl(record)
    await proc.redis.delete(stream)  # as when it has expired: the record is still there
    [final] = await collect(proc, task_id)
    assert final.type is EventType.TASK_COMPLETED and final.origin == "record"
    assert final.task["result"] == events[-1].task["result"]


async def test_following_needs_events(make_processor: MakeProcessor) -> None:
    quiet = await make_processor(max_workers=0, publish_events=False)
    task_id = await quiet.submit_task(**CHAT)
    with pytest.raises(ProcessorError, match="publish_events"):
        await collect(quiet, task_id)


async def test_following_a_corrupt_finished_record_ends_at_once(
        make_processor: MakeProcessor) -> None:
    proc = await make_processor(max_workers=0)
    assert proc.redis is not None
    await proc.redis.hset(proc.keys.task("bad"), mapping={"status": "failed", "spec": "{"})
    [final] = await collect(proc, "bad")
    assert final.type is EventType.TASK_FAILED and final.origin == "record"
    assert final.task["error_type"] == "CorruptTaskError"


async def test_stopping_ends_a_follow_with_a_clear_error(make_processor: MakeProcessor,
                                                         redis: Redis, namespace: str) -> None:
    await make_processor(max_workers=1, backend=Gate())  # starts it, never ends it
    client = AsyncAIProcessor(max_workers=0, redis=redis, namespace=namespace)
    await client.start()
    task_id = await client.submit_task(**CHAT)
    events = client.follow(task_id)
    assert (await anext(events)).type is EventType.TASK_STARTED  # it follows, and waits
    pending = asyncio.ensure_future(anext(events))
    async with asyncio.timeout(10):  # promptly, though the reader's read is blocked
        await client.stop()
        with pytest.raises(ProcessorError, match="stopped"):
            await pending
    await events.aclose()
