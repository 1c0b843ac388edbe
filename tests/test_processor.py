"""The processor end to end, on fakeredis and on the real Redis."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from typing import Any

import pytest

import chatroom_async.processor as processor_module
from chatroom_async import (
    AITask,
    ContentFilterError,
    FunctionBackend,
    ProcessorError,
    RateLimitError,
    RetryPolicy,
    StreamChunk,
    TaskNotFoundError,
    TaskPriority,
    TaskWaitTimeout,
    ValidationError,
)
from tests.conftest import Gate, InFlight, MakeProcessor, wait_until

CHAT = {"user_id": 1, "request_type": "chat_completion", "request_data": {"message": "你好"}}


async def test_submit_wait_and_status_through_every_stage(make_processor: MakeProcessor) -> None:
    gate = Gate()
    proc = await make_processor(max_workers=1, backend=gate)
    task_id = await proc.submit_task(**CHAT)
    await gate.entered.wait()
    status = await proc.get_task_status(task_id)
    assert status is not None and status["status"] == "processing"
    assert status["started_at"] is not None and status["deliveries"] == 1
    gate.release.set()
    final = await proc.wait_for_task(task_id, timeout=10)
    assert final["status"] == "completed" and final["result"] == {"response": f"done {task_id}"}
    assert final["completed_at"] >= final["started_at"] >= final["created_at"]
    ttl = await proc.redis.ttl(proc.keys.task(task_id))  # type: ignore[union-attr]
    assert 0 < ttl <= 3600


async def test_pending_status_before_any_worker(make_processor: MakeProcessor) -> None:
    client = await make_processor(max_workers=0)
    task_id = await client.submit_task(**CHAT, priority=TaskPriority.HIGH)
    status = await client.get_task_status(task_id)
    assert status is not None and status["status"] == "pending" and status["priority"] == 3
    assert await client.get_task_status("no-such-task") is None
    with pytest.raises(TaskNotFoundError):
        await client.wait_for_task("no-such-task", timeout=1)
    with pytest.raises(TaskWaitTimeout):
        await client.wait_for_task(task_id, timeout=0.05)


async def test_a_finished_task_is_returned_even_with_no_time_to_wait(
        make_processor: MakeProcessor) -> None:
    proc = await make_processor(max_workers=1)
    task_id = await proc.submit_task(**CHAT)
    final = await proc.wait_for_task(task_id, timeout=10)
    # A worker process that has not subscribed yet: its deadline passes while it does.
    other = await make_processor(max_workers=1)
    assert await other.wait_for_task(task_id, timeout=0) == final
    with pytest.raises(TaskNotFoundError):
        await other.wait_for_task("no-such-task", timeout=0)


async def test_a_last_look_that_gets_no_answer_is_a_timeout(
        make_processor: MakeProcessor, monkeypatch: pytest.MonkeyPatch) -> None:
    client = await make_processor(max_workers=0)
    task_id = await client.submit_task(**CHAT)  # no worker: it stays pending
    monkeypatch.setattr(processor_module, "_LAST_LOOK_S", 0.05)
    get_task_status = client.get_task_status
    reads = 0

    async def unanswered_after_the_first(tid: str) -> Any:
        nonlocal reads
        reads += 1
        if reads > 1:
            await asyncio.Event().wait()  # Redis stopped answering
        return await get_task_status(tid)

    client.get_task_status = unanswered_after_the_first  # type: ignore[method-assign]
    with pytest.raises(TaskWaitTimeout):
        await client.wait_for_task(task_id, timeout=0.5)
    assert reads == 2  # the read in the wait, then the last look that got no answer


async def test_strict_priority_then_fifo(make_processor: MakeProcessor) -> None:
    client = await make_processor(max_workers=0)
    order = [TaskPriority.LOW, TaskPriority.NORMAL, TaskPriority.URGENT, TaskPriority.HIGH,
             TaskPriority.URGENT, TaskPriority.LOW, TaskPriority.NORMAL]
    ids = [await client.submit_task(**CHAT, priority=p) for p in order]
    stats = await client.get_stats()
    assert stats["queue_depth"] == {"urgent": 2, "high": 1, "normal": 2, "low": 2}
    ran: list[str] = []
    worker = await make_processor(max_workers=1)
    worker.add_callback("task_started", lambda t: ran.append(t.task_id))
    for task_id in ids:
        await worker.wait_for_task(task_id, timeout=10)
    expected = sorted(range(len(ids)), key=lambda i: (-order[i], i))
    assert ran == [ids[i] for i in expected]


async def test_an_idle_worker_is_woken_by_the_submit_not_by_a_timer(
        make_processor: MakeProcessor) -> None:
    # The idle wait is 60 s: only the wake-up pushed by the submit can start the task in time.
    worker = await make_processor(max_workers=2, max_idle_wait_s=60.0)
    started = asyncio.Event()
    worker.add_callback("task_started", lambda t: started.set())
    client = await make_processor(max_workers=0)
    await client.submit_task(**CHAT)
    async with asyncio.timeout(5):
        await started.wait()


async def test_an_idle_workers_claim_rides_behind_its_wait(
        make_processor: MakeProcessor) -> None:
    # With the system clock the claim leaves with the blocking wait and the server runs it
    # when the submit's wake-up arrives: the task starts with no claim of its own after it.
    worker = await make_processor(max_workers=2, max_idle_wait_s=60.0)
    assert worker.queue is not None
    queue = worker.queue
    plain: list[dict[str, Any]] = []
    behind: list[dict[str, Any]] = []
    claim, wait_then_claim = queue.claim, queue.wait_then_claim

    async def counted_claim(**kwargs: Any) -> Any:
        plain.append(kwargs)
        return await claim(**kwargs)

    async def counted_wait_then_claim(**kwargs: Any) -> Any:
        behind.append(kwargs)
        waiting.set()
        return await wait_then_claim(**kwargs)

    waiting, started = asyncio.Event(), asyncio.Event()
    queue.claim = counted_claim  # type: ignore[method-assign]
    queue.wait_then_claim = counted_wait_then_claim  # type: ignore[method-assign]
    worker.add_callback("task_started", lambda t: started.set())
    client = await make_processor(max_workers=0)
    async with asyncio.timeout(5):
        await waiting.wait()  # its first claim found nothing: now it waits, idle
    plain.clear()
    await client.submit_task(**CHAT)
    async with asyncio.timeout(5):
        await started.wait()
    # No claim of its own after the wait: the one behind the wait took the task. (Then,
    # one slot busy, it waits again: until its lease is due for a sweep at the latest.)
    assert plain == [] and behind[0]["max_count"] == 2 and behind[0]["block_s"] == 60.0


async def test_validation_errors_queue_nothing(make_processor: MakeProcessor) -> None:
    proc = await make_processor(max_workers=0)
    with pytest.raises(ValidationError, match="request_type"):
        await proc.submit_task(1, "image", {"message": "x"})
    with pytest.raises(ValidationError, match="target_language"):
        await proc.submit_task(1, "translation", {"text": "x"})
    with pytest.raises(ValidationError):
        await proc.submit_many([CHAT, {**CHAT, "user_id": -1}])
    stats = await proc.get_stats()
    assert stats["total_tasks"] == 0 and stats["current_queue_size"] == 0
    good = await proc.submit_task(**CHAT)
    assert (await proc.get_task_status(good))["status"] == "pending"  # type: ignore[index]


async def test_submit_many_and_duplicate_ids(make_processor: MakeProcessor) -> None:
    proc = await make_processor(max_workers=2)
    ids = await proc.submit_many([CHAT, {**CHAT, "task_id": "mine-1", "priority": "urgent"}])
    assert ids[1] == "mine-1"
    with pytest.raises(ValidationError, match="already taken"):
        await proc.submit_task(**CHAT, task_id="mine-1")
    with pytest.raises(ValidationError, match="twice"):
        await proc.submit_many([{**CHAT, "task_id": "dup"}, {**CHAT, "task_id": "dup"}])
    assert await proc.get_task_status("dup") is None
    with pytest.raises(ValidationError, match=r"not queued: \['mine-1'\]; queued: \['new-1'\]"):
        await proc.submit_many([{**CHAT, "task_id": "mine-1"}, {**CHAT, "task_id": "new-1"}])
    for task_id in ids:
        assert (await proc.wait_for_task(task_id, timeout=10))["status"] == "completed"


async def test_cancel_a_queued_task_it_never_runs(make_processor: MakeProcessor) -> None:
    client = await make_processor(max_workers=0)
    doomed = await client.submit_task(**CHAT)
    kept = await client.submit_task(**CHAT)
    assert await client.cancel_task(doomed) is True
    assert await client.cancel_task(doomed) is False
    assert await client.cancel_task("unknown") is False
    calls: list[str] = []

    async def record(req: Any) -> dict[str, Any]:
        calls.append(req.task_id)
        return {"response": "ok"}

    worker = await make_processor(max_workers=2, backend=FunctionBackend(record))
    assert (await worker.wait_for_task(kept, timeout=10))["status"] == "completed"
    assert calls == [kept]
    assert (await client.get_task_status(doomed))["status"] == "cancelled"  # type: ignore[index]
    assert await client.cancel_task(kept) is False  # already finished
    assert (await client.get_stats())["cancelled_tasks"] == 1


@pytest.mark.parametrize("where", ["same process", "other process"])
async def test_cancel_a_running_task(make_processor: MakeProcessor, where: str) -> None:
    gate = Gate()
    worker = await make_processor(max_workers=2, backend=gate)
    canceller = worker if where == "same process" else await make_processor(max_workers=0)
    events: list[str] = []
    seen = asyncio.Event()
    worker.add_callback("task_cancelled", lambda t: (events.append(t.task_id), seen.set()))
    task_id = await canceller.submit_task(**CHAT)
    await gate.entered.wait()
    assert await canceller.cancel_task(task_id) is True
    await wait_until(lambda: task_id in gate.cancelled, seen)
    gate.release.set()  # would complete it, if the coroutine were still running
    final = await canceller.wait_for_task(task_id, timeout=5)
    assert final["status"] == "cancelled" and final["result"] is None
    await wait_until(lambda: bool(events), seen)
    assert events == [task_id]


async def test_timeout_is_enforced_and_reported(make_processor: MakeProcessor) -> None:
    hang = Gate()  # never released
    proc = await make_processor(max_workers=1, backend=hang)
    task_id = await proc.submit_task(**CHAT, timeout=0.05, max_retries=0)
    final = await proc.wait_for_task(task_id, timeout=10)
    assert final["status"] == "failed" and final["error_type"] == "AITimeoutError"
    assert hang.cancelled == [task_id]


async def test_retry_with_backoff_honours_retry_after(make_processor: MakeProcessor) -> None:
    attempts: list[float] = []

    async def limited(req: Any) -> dict[str, Any]:
        attempts.append(asyncio.get_running_loop().time())
        if len(attempts) < 3:
            raise RateLimitError("too many", retry_after=0.2)
        return {"response": "finally"}

    policy = RetryPolicy(base_s=0.01, cap_s=0.05, jitter="full")
    proc = await make_processor(max_workers=1, backend=FunctionBackend(limited), retry=policy)
    statuses: list[str] = []
    proc.add_callback("task_retrying", lambda t: statuses.append(t.status.value))
    task_id = await proc.submit_task(**CHAT, max_retries=1)
    final = await proc.wait_for_task(task_id, timeout=10)
    # Rate limits retry on a budget of their own: the task's one retry is still unused.
    assert final["status"] == "completed" and final["retry_count"] == 0
    assert final["deliveries"] == 3
    assert statuses == ["retrying", "retrying"]
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert all(gap >= 0.19 for gap in gaps), gaps  # retry_after beats the 0.05 s cap
    assert (await proc.get_stats())["retried_tasks"] == 2


async def test_retrying_status_is_visible_while_waiting(make_processor: MakeProcessor) -> None:
    async def fail(req: Any) -> dict[str, Any]:
        raise RateLimitError("busy", retry_after=30)

    proc = await make_processor(max_workers=1, backend=FunctionBackend(fail))
    seen = asyncio.Event()
    proc.add_callback("task_retrying", lambda t: seen.set())
    task_id = await proc.submit_task(**CHAT)
    await seen.wait()
    status = await proc.get_task_status(task_id)
    assert status is not None and status["status"] == "retrying"
    # a rate limit retries on a budget of its own: the task's retries are untouched
    assert status["error_type"] == "RateLimitError" and status["retry_count"] == 0
    assert (await proc.get_stats())["waiting_retry"] == 1
    assert await proc.cancel_task(task_id) is True
    assert (await proc.get_stats())["waiting_retry"] == 0


async def test_permanent_errors_are_not_retried(make_processor: MakeProcessor) -> None:
    backend = FunctionBackend(_raise(ContentFilterError("blocked")))
    proc = await make_processor(max_workers=1, backend=backend)
    failed: list[AITask] = []
    proc.add_callback("task_failed", failed.append)
    task_id = await proc.submit_task(**CHAT, max_retries=3)
    final = await proc.wait_for_task(task_id, timeout=10)
    assert backend.calls == 1 and final["status"] == "failed"
    assert final["error_type"] == "ContentFilterError" and final["error_message"] == "blocked"
    assert [t.task_id for t in failed] == [task_id] and failed[0].error_type == "ContentFilterError"
    assert task_id in await proc.dead_letters()


async def test_unknown_backend_exceptions_fail_without_retry(make_processor: MakeProcessor) -> None:
    backend = FunctionBackend(_raise(KeyError("oops")))
    proc = await make_processor(max_workers=1, backend=backend)
    final = await proc.wait_for_task(await proc.submit_task(**CHAT), timeout=10)
    assert final["error_type"] == "BadRequestError" and "KeyError" in final["error_message"]
    assert backend.calls == 1


def _raise(error: Exception) -> Any:
    async def fn(req: Any) -> dict[str, Any]:
        raise error
    return fn


async def test_callbacks_sync_async_and_raising(make_processor: MakeProcessor,
                                                caplog: pytest.LogCaptureFixture) -> None:
    proc = await make_processor(max_workers=2)
    got: list[tuple[str, str]] = []
    done = asyncio.Event()

    async def on_done(task: AITask) -> None:
        got.append(("async", task.status.value))
        done.set()

    def broken(task: AITask) -> None:
        raise RuntimeError("callback bug")

    proc.add_callback("task_completed", broken)
    proc.add_callback("task_completed", lambda t: got.append(("sync", t.result["response"])))
    proc.add_callback("task_completed", on_done)
    with pytest.raises(ValueError, match="unknown event"):
        proc.add_callback("task_finished", print)
    with caplog.at_level(logging.ERROR, logger="chatroom_async.events"):
        task_id = await proc.submit_task(**CHAT)
        await wait_until(lambda: len(got) == 2, done)
    assert ("async", "completed") in got
    assert "callback bug" in caplog.text
    assert (await proc.get_task_status(task_id))["status"] == "completed"  # type: ignore[index]
    second = await proc.submit_task(**CHAT)  # the worker is unharmed
    assert (await proc.wait_for_task(second, timeout=10))["status"] == "completed"


async def test_events_reach_another_process(make_processor: MakeProcessor) -> None:
    client = await make_processor(max_workers=0)
    seen: list[tuple[str, str]] = []
    done = asyncio.Event()
    for name in ("task_started", "task_completed"):
        client.add_callback(name, lambda t, n=name: (seen.append((n, t.task_id)), done.set()))
    await make_processor(max_workers=1)
    task_id = await client.submit_task(**CHAT)
    final = await client.wait_for_task(task_id, timeout=10)
    assert final["status"] == "completed"
    await wait_until(lambda: len(seen) == 2, done)
    assert seen == [("task_started", task_id), ("task_completed", task_id)]


class Streamer:
    async def complete(self, request: Any) -> dict[str, Any]:
        raise AssertionError("the processor should stream")

    async def stream(self, request: Any) -> Any:
        words = ["你", "好", "！"]
        for i, word in enumerate(words):
            last = i == len(words) - 1
            yield StreamChunk(i, word, finish_reason="stop" if last else None,
                              result={"response": "".join(words)} if last else None)


async def test_streamed_chunks_become_progress_events(make_processor: MakeProcessor) -> None:
    client = await make_processor(max_workers=0)
    local: list[str] = []
    remote: list[str] = []
    done = asyncio.Event()
    worker = await make_processor(max_workers=1, backend=Streamer())
    worker.add_callback("task_progress", lambda t: local.append(t.progress["text"]))
    client.add_callback("task_progress", lambda t: (remote.append(t.progress["text"]), done.set()))
    task_id = await client.submit_task(**CHAT)
    final = await client.wait_for_task(task_id, timeout=10)
    assert final["result"] == {"response": "你好！"}
    assert local == ["你", "好", "！"]  # this process's callbacks get every chunk
    # Other processes get them coalesced (worker/chunks.py): the same text in fewer events.
    await wait_until(lambda: "".join(remote) == "你好！", done)
    assert 1 <= len(remote) <= 3


async def test_response_cache_skips_the_backend(make_processor: MakeProcessor) -> None:
    backend = FunctionBackend(_echo)
    proc = await make_processor(max_workers=1, backend=backend, cache_ttl_s=60.0)
    first = await proc.wait_for_task(await proc.submit_task(**CHAT), timeout=10)
    second = await proc.wait_for_task(await proc.submit_task(**CHAT), timeout=10)
    other = await proc.wait_for_task(
        await proc.submit_task(1, "chat_completion", {"message": "different"}), timeout=10)
    assert backend.calls == 2
    assert second["result"] == first["result"] and second["cached"] and not first["cached"]
    assert not other["cached"]


async def _echo(req: Any) -> dict[str, Any]:
    return {"response": req.request_data["message"]}


async def test_stats_are_shared_between_processes(make_processor: MakeProcessor) -> None:
    a = await make_processor(max_workers=2)
    b = await make_processor(max_workers=2, backend=FunctionBackend(_raise(ContentFilterError())))
    ids = [await a.submit_task(**CHAT) for _ in range(3)] + \
          [await b.submit_task(**CHAT) for _ in range(3)]
    finals = [await a.wait_for_task(t, timeout=10) for t in ids]
    statuses = sorted(f["status"] for f in finals)
    for proc in (a, b):
        stats = await proc.get_stats()
        assert stats["total_tasks"] == 6
        assert stats["completed_tasks"] == statuses.count("completed")
        assert stats["failed_tasks"] == statuses.count("failed")
        assert stats["success_rate"] + stats["failure_rate"] == pytest.approx(1.0)
        assert stats["current_queue_size"] == 0 and stats["active_tasks_count"] == 0


async def test_graceful_stop_hands_unfinished_tasks_back(make_processor: MakeProcessor) -> None:
    gate = Gate()
    first = await make_processor(max_workers=2, backend=gate)
    ids = [await first.submit_task(**CHAT) for _ in range(3)]
    started = asyncio.Event()
    first.add_callback("task_started", lambda t: started.set())
    await wait_until(lambda: len(gate.started) == 2, gate.entered)
    await first.stop(drain_timeout_s=0.05)
    assert sorted(gate.cancelled) == sorted(gate.started)
    for task_id in ids:
        assert (await first.queue.record(task_id))["status"] == "pending"  # type: ignore[union-attr]
    second = await make_processor(max_workers=3)
    for task_id in ids:
        assert (await second.wait_for_task(task_id, timeout=10))["status"] == "completed"


async def test_drain_lets_running_tasks_finish(make_processor: MakeProcessor) -> None:
    gate = Gate()
    proc = await make_processor(max_workers=1, backend=gate)
    task_id = await proc.submit_task(**CHAT)
    await gate.entered.wait()
    stopping = asyncio.create_task(proc.stop(drain_timeout_s=30))
    await asyncio.sleep(0)  # let stop() begin draining
    gate.release.set()
    await stopping
    assert (await proc.queue.record(task_id))["status"] == "completed"  # type: ignore[union-attr]


async def test_garbage_records_are_moved_aside_and_the_worker_goes_on(
        make_processor: MakeProcessor) -> None:
    client = await make_processor(max_workers=0)
    keys = client.keys
    redis = client.redis
    assert redis is not None
    await redis.hset(keys.task("bad"), mapping={"spec": "{not json", "priority": "4",
                                                "max_retries": "3", "status": "pending",
                                                "retry_count": "0", "deliveries": "0"})
    await redis.zadd(keys.ready, {"bad": 0.0, "ghost": 0.1})
    good = await client.submit_task(**CHAT)
    worker = await make_processor(max_workers=1)
    assert (await worker.wait_for_task(good, timeout=10))["status"] == "completed"
    bad = await worker.wait_for_task("bad", timeout=10)
    assert bad["status"] == "failed" and bad["error_type"] == "CorruptTaskError"
    assert "bad" in await worker.dead_letters()
    assert (await worker.get_stats())["garbage"] == 1


async def test_using_a_stopped_processor_is_a_clear_error() -> None:
    from chatroom_async import AsyncAIProcessor

    proc = AsyncAIProcessor()
    with pytest.raises(ProcessorError, match="not running"):
        await proc.submit_task(**CHAT)
    with pytest.raises(ProcessorError):
        AsyncAIProcessor(max_workers=-1)
    with pytest.raises(ProcessorError, match="max_concurrent_tasks"):
        AsyncAIProcessor("redis://127.0.0.1:6379", 10, 50)  # type: ignore[arg-type]


async def test_a_bad_scheduler_score_queues_nothing(make_processor: MakeProcessor) -> None:
    class Broken:
        def score(self, task: AITask, ctx: Any) -> float:
            return float("nan")

    proc = await make_processor(max_workers=0, scheduler=Broken())
    with pytest.raises(ProcessorError, match="finite"):
        await proc.submit_task(**CHAT)
    assert (await proc.get_stats())["total_tasks"] == 0


async def test_a_pluggable_scheduler_with_user_context(make_processor: MakeProcessor) -> None:
    class VipFirst:
        def score(self, task: AITask, ctx: Any) -> float:
            return task.created_at - (1000.0 if ctx.get("vip") else 0.0)

    client = await make_processor(max_workers=0, scheduler=VipFirst(),
                                  user_context=lambda uid: {"vip": uid == 99})
    plain = await client.submit_task(**CHAT)
    vip = await client.submit_task(**{**CHAT, "user_id": 99})
    ran: list[str] = []
    worker = await make_processor(max_workers=1)
    worker.add_callback("task_started", lambda t: ran.append(t.task_id))
    await worker.wait_for_task(plain, timeout=10)
    assert ran == [vip, plain]


async def test_a_worker_renews_its_lease_so_a_long_task_is_not_reclaimed(
        make_processor: MakeProcessor) -> None:
    # The lease is 0.6 s and the task runs until released; without renewal a second worker
    # would reclaim and run it again. Released only after 3 renewals have happened.
    gate = Gate()
    first = await make_processor(max_workers=1, backend=gate, lease_s=0.6)
    renewed = asyncio.Event()
    original = first.queue.renew  # type: ignore[union-attr]
    renewals: list[int] = []

    async def counting_renew(leases: Any, deadline: float) -> list[str]:
        lost = await original(leases, deadline)
        renewals.append(len(leases))
        renewed.set()
        return lost

    first.queue.renew = counting_renew  # type: ignore[method-assign,union-attr]
    task_id = await first.submit_task(**CHAT)
    await gate.entered.wait()
    second = await make_processor(max_workers=1, backend=gate, lease_s=0.6)
    await wait_until(lambda: len(renewals) >= 3, renewed)
    gate.release.set()
    final = await second.wait_for_task(task_id, timeout=10)
    assert final["status"] == "completed" and final["deliveries"] == 1
    assert gate.started == [task_id]


async def test_an_unreachable_server_fails_start_cleanly() -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    from chatroom_async import AsyncAIProcessor

    proc = AsyncAIProcessor("redis://127.0.0.1:1/0", max_workers=2)
    with pytest.raises(RedisConnectionError):
        await proc.start()
    assert not proc.running  # and nothing was left open (warnings are errors here)
    with pytest.raises(ProcessorError):
        await proc.submit_task(**CHAT)


async def test_a_broken_cache_is_a_miss_not_a_failure(make_processor: MakeProcessor,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    backend = FunctionBackend(_echo)
    proc = await make_processor(max_workers=1, backend=backend, cache_ttl_s=60.0)
    assert proc.pool is not None and proc.pool.attempt.cache is not None

    async def broken(*args: Any) -> Any:
        raise ConnectionError("cache down")

    proc.pool.attempt.cache.get = broken  # type: ignore[method-assign]
    proc.pool.attempt.cache.put = broken  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="chatroom_async.worker.attempt"):
        final = await proc.wait_for_task(await proc.submit_task(**CHAT), timeout=10)
    assert final["status"] == "completed" and backend.calls == 1
    assert "cache unavailable" in caplog.text


async def test_never_more_tasks_at_once_than_max_workers(make_processor: MakeProcessor) -> None:
    # Runs end at uneven times, so outcomes are recorded in batches of every size while
    # slots free up under both the fetcher and the outbox: neither may claim for a slot
    # the other is already filling.
    rng = random.Random(7)
    turns = [rng.choice((0, 1, 2, 5, 20)) for _ in range(400)]
    in_flight, done = InFlight(), asyncio.Event()
    finished: list[str] = []

    async def uneven(req: Any) -> dict[str, Any]:
        with in_flight:
            for _ in range(turns[len(finished) % len(turns)]):
                await asyncio.sleep(0)
        finished.append(req.task_id)
        done.set()
        return {"response": "ok"}

    client = await make_processor(max_workers=0)
    await client.submit_many([{"user_id": 1, "request_type": "chat_completion",
                               "request_data": {"message": f"m{i}"}} for i in range(400)])
    await make_processor(max_workers=8, backend=FunctionBackend(uneven))
    await wait_until(lambda: len(finished) == 400, done, timeout=30)
    assert in_flight.peak == 8  # full use of the pool, and never beyond it


async def test_a_task_that_comes_straight_back_does_not_take_a_second_slot(
        make_processor: MakeProcessor) -> None:
    # A retry due at once is swept back and claimed by the same finish call that recorded
    # it, while its first run is still ending: the pool must count one slot for it, not
    # take one more task than it has slots (it used to: 12 at once with 11 slots).
    limit, in_flight = 11, InFlight()
    attempts: dict[str, int] = {}

    async def flaky_once(req: Any) -> dict[str, Any]:
        with in_flight:
            attempts[req.task_id] = attempts.get(req.task_id, 0) + 1
            await asyncio.sleep(0.2)
            if req.task_id.startswith("x") and attempts[req.task_id] == 1:
                raise RateLimitError("try again")
            return {"response": "ok"}

    client = await make_processor(max_workers=0)
    ids = await client.submit_many([{"user_id": 1, "request_type": "chat_completion",
                                     "request_data": {"message": f"m{i}"},
                                     "task_id": f"{'x' if i == 0 else 't'}{i}"}
                                    for i in range(60)])
    worker = await make_processor(max_workers=limit, backend=FunctionBackend(flaky_once),
                                  retry=RetryPolicy(base_s=0.0, jitter="none"))
    for task_id in ids:
        assert (await worker.wait_for_task(task_id, timeout=20))["status"] == "completed"
    assert attempts["x0"] == 2
    assert in_flight.peak == limit


async def test_the_worker_keeps_claiming_after_its_slots_free_up_behind_a_slow_call(
        make_processor: MakeProcessor) -> None:
    # Slots freed while a finish-and-claim call is in flight, and a claim that brings back
    # only a corrupt record: the fetcher must still hear that slots are free.
    async def quick(req: Any) -> dict[str, Any]:
        await asyncio.sleep({"A": 0.2, "B": 0.21}.get(req.task_id, 0.01))
        return {"response": "ok"}

    worker = await make_processor(max_workers=2, backend=FunctionBackend(quick))
    queue = worker.queue
    assert queue is not None
    finish_and_claim = queue.finish_and_claim

    async def slow_finish_and_claim(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.05)  # a slow round trip
        return await finish_and_claim(*args, **kwargs)

    queue.finish_and_claim = slow_finish_and_claim  # type: ignore[method-assign]
    request = {"user_id": 1, "request_type": "chat_completion", "request_data": {"message": "hi"}}
    await worker.submit_many([{**request, "task_id": "A"}, {**request, "task_id": "B"}])
    started = asyncio.Event()
    worker.add_callback("task_started", lambda task: started.set())
    await wait_until(lambda: len(worker.pool.running) == 2, started)  # type: ignore[union-attr]
    await worker.submit_task(**request, task_id="Y")
    await worker.redis.hset(queue.keys.task("Y"), "spec", "{corrupt")  # type: ignore[union-attr]
    for task_id in ("A", "B", "Y"):
        await worker.wait_for_task(task_id, timeout=10)
    await worker.submit_task(**request, task_id="Z")
    assert (await worker.wait_for_task("Z", timeout=10))["status"] == "completed"


async def test_a_claim_that_finds_only_garbage_claims_again_at_once(
        make_processor: MakeProcessor) -> None:
    worker = await make_processor(max_workers=1, max_idle_wait_s=30.0)
    started = asyncio.Event()
    worker.add_callback("task_started", lambda task: started.set())
    await worker.submit_task(1, "chat_completion", {"message": "warm up"})
    await started.wait()  # the worker is up; soon it waits, idle, for a wake-up
    # A ready entry without a record, first in line and queued without a wake-up...
    await worker.redis.zadd(worker.keys.ready, {"ghost": 0})  # type: ignore[union-attr]
    # ...so the wake-up for this task finds the ghost first, which is set aside.
    task_id = await worker.submit_task(1, "chat_completion", {"message": "hi"})
    # Not after an idle wait of 30 s: the claim said more were ready.
    assert (await worker.wait_for_task(task_id, timeout=5))["status"] == "completed"
    assert (await worker.queue.counts()).garbage == 1  # type: ignore[union-attr]


async def test_a_run_cancelled_before_its_first_step_gives_its_slot_back(
        make_processor: MakeProcessor) -> None:
    worker = await make_processor(max_workers=1)
    pool = worker.pool
    assert pool is not None
    launch = pool._launch

    def launch_then_cancel_at_once(claimed: Any, now: float) -> None:
        launch(claimed, now)
        for c in claimed:  # a cancel handled in the same loop step, before the run starts
            if c.task_id == "A":
                assert pool.cancel_local("A")

    pool._launch = launch_then_cancel_at_once  # type: ignore[method-assign]
    await worker.submit_task(1, "chat_completion", {"message": "a"}, task_id="A")
    await worker.submit_task(1, "chat_completion", {"message": "b"}, task_id="B")
    # With one slot, B runs only if A's cancelled run gave its slot back.
    assert (await worker.wait_for_task("B", timeout=5))["status"] == "completed"


async def test_a_late_renewal_does_not_stop_the_newer_delivery_of_its_task(
        make_processor: MakeProcessor) -> None:
    gate = Gate()
    worker = await make_processor(max_workers=2, backend=gate, lease_s=3.0,
                                  renew_interval_s=0.05)
    pool, queue = worker.pool, worker.queue
    assert pool is not None and queue is not None
    back, renewed = asyncio.Event(), asyncio.Event()
    launch = pool._launch

    def watch_launch(claimed: Any, now: float) -> None:
        launch(claimed, now)
        if any(c.task_id == "X" and c.deliveries == 2 for c in claimed):
            back.set()

    renew = queue.renew

    async def slow_renew(leases: Any, deadline: float) -> Any:
        if any(task_id == "X" for task_id, _ in leases) and not back.is_set():
            # While this renewal is on its way, X's lease runs out and X comes back here.
            await queue.redis.zadd(queue.keys.inflight, {"X": 0})
            await queue.poke(pool.worker_id)
            await back.wait()
            lost = await renew(leases, deadline)  # reports X: the old token is gone
            renewed.set()
            return lost
        return await renew(leases, deadline)

    pool._launch = watch_launch  # type: ignore[method-assign]
    queue.renew = slow_renew  # type: ignore[method-assign]
    await worker.submit_task(1, "chat_completion", {"message": "x"}, task_id="X")
    await renewed.wait()
    gate.release.set()
    final = await worker.wait_for_task("X", timeout=2)  # before the 3 s lease could expire
    assert final["status"] == "completed" and final["deliveries"] == 2
